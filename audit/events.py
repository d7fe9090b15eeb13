"""Building audit.k8s.io/v1 Events from what the gateway knows about a request.

Read by tools built for kube-apiserver's audit log, they mean what its events mean: `user` is the
authenticated caller (kubegate forwards as the caller, it does not impersonate on anyone's
request, so there is no `impersonatedUser`); `stage` is ResponseComplete, with RequestReceived
first for a change (written ahead, before it is forwarded), ResponseStarted first for long-running
requests (watch, logs, exec/attach/port-forward, proxy) and Panic for a failure inside the gateway; `auditID` is a UUID; kubegate's own objects (access requests,
approval tickets, breakers) are recorded with real verbs on `*.kubegate.io` resources, and what
happened to them in the annotation `kubegate.io/event`.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator


def read(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """The events in audit log files, in order (lines that are no JSON object skipped; a missing
    file is empty), without the log's own `log-opened` lines."""
    for path in paths:
        try:
            f = open(path, encoding="utf-8")
        except OSError:
            continue
        with f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and \
                        (event.get("annotations") or {}).get("kubegate.io/event") != "log-opened":
                    yield event


def timestamp(epoch: float) -> str:
    """RFC 3339 in UTC with microseconds, as kube-apiserver writes them (two per event, on the
    request path: time.strftime is a third of datetime's cost here)."""
    seconds = int(epoch // 1)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((epoch - seconds) * 1e6):06d}Z"


# What happened to one of kubegate's own objects, as the API verb that did it.
STEP_VERBS = {"revoked": "create", "pulled": "create", "released": "delete", "requested": "create", "approved": "update", "denied": "update", "expired": "update",
              "used": "update", "withdrawn": "update", "tripped": "create", "reset": "delete",
              "login": "create", "logout": "delete", "ended": "delete", "terminal-started": "create",
              "terminal-ended": "update", "refused": "create", "command": "create", "finished": "update",
              "approval-requested": "create", "watched": "get"}


def _step(prefix: str, kind: str, resource: str, name: str, uri: str, actor: str, now: float,
          annotations: dict[str, str]) -> dict[str, Any]:
    """A step of one of kubegate's own objects (access request, ticket, breaker), recorded apart
    from the HTTP request that may have caused it."""
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": str(uuid.uuid4()), "stage": "ResponseComplete", "verb": STEP_VERBS.get(kind, "update"),
        "requestURI": uri, "user": {"username": actor}, "sourceIPs": [], "userAgent": "kubegate",
        "objectRef": {"resource": resource, "apiGroup": "kubegate.io", "apiVersion": "v1", "name": name},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": timestamp(now), "stageTimestamp": timestamp(now),
        "annotations": {"kubegate.io/event": kind, f"kubegate.io/{prefix}-event": kind, **annotations},
    }


def access_event(kind: str, request_id: str, actor: str, user: str, role: str, scope: str, reason: str,
                 now: float) -> dict[str, Any]:
    return _step("access", kind, "accessrequests", request_id, f"/kubegate/v1/accessrequests/{request_id}", actor,
                 now, {"kubegate.io/access-user": user, "kubegate.io/access-role": role,
                       "kubegate.io/access-scope": scope, "kubegate.io/access-reason": reason[:500]})


def approval_event(kind: str, ticket_id: str, actor: str, user: str, ticket_kind: str, change: str,
                   reasons: str, now: float) -> dict[str, Any]:
    return _step("approval", kind, "approvals", ticket_id, f"/kubegate/v1/approvals/{ticket_id}", actor, now,
                 {"kubegate.io/approval-user": user, "kubegate.io/approval-type": ticket_kind,
                  "kubegate.io/approval-change": change, "kubegate.io/approval-reasons": reasons[:1000]})


def breaker_event(kind: str, key: str, actor: str, label: str, reason: str, now: float) -> dict[str, Any]:
    """A circuit breaker opened ("tripped", by the request that found its budget empty) or "reset"."""
    return _step("breaker", kind, "breakers", key, "/kubegate/v1/breakers", actor, now,
                 {"kubegate.io/breaker": key, "kubegate.io/breaker-policy": label,
                  "kubegate.io/breaker-reason": reason[:500]})


def brake_event(kind: str, brake_id: str, actor: str, scope: str, reason: str, now: float) -> dict[str, Any]:
    """An emergency brake "pulled", "released" or "expired"."""
    return _step("brake", kind, "brakes", brake_id, f"/kubegate/v1/brakes/{brake_id}", actor, now,
                 {"kubegate.io/brake": brake_id, "kubegate.io/brake-scope": scope,
                  "kubegate.io/brake-reason": reason[:1000]})


def revocation_event(key: str, actor: str, reason: str, now: float) -> dict[str, Any]:
    """A token, or every earlier token of a user, revoked (KEY: `token:<jti>` or `user:<name>`)."""
    return _step("token", "revoked", "tokenrevocations", key, "/kubegate/v1/tokens/revocations", actor, now,
                 {"kubegate.io/token-revoked": key, "kubegate.io/token-revocation-reason": reason[:1000]})


def webshell_event(kind: str, session: str, actor: str, now: float, annotations: dict[str, str]) -> dict[str, Any]:
    """A step of a webshell session: login, a terminal opened or closed, a line refused or run, logout."""
    return _step("webshell", kind, "webshellsessions", session, f"/webshell/sessions/{session}", actor, now,
                 {"kubegate.io/session": session, **{k: v[:2000] for k, v in annotations.items()}})


def event(*, audit_id: str, stage: str, request_uri: str, verb: str, user: dict[str, Any] | None,
          source_ips: list[str], user_agent: str, object_ref: dict[str, str] | None, code: int,
          status_message: str, reason: str, received: float, now: float,
          annotations: dict[str, str], level: str = "Metadata", request_object: Any = None,
          response_object: Any = None) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level,
        "auditID": audit_id, "stage": stage, "requestURI": request_uri, "verb": verb,
        "user": user or {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
        "sourceIPs": source_ips, "userAgent": user_agent,
        "requestReceivedTimestamp": timestamp(received), "stageTimestamp": timestamp(now),
        "annotations": annotations,
    }
    if code or stage not in ("ResponseStarted", "RequestReceived"):
        ev["responseStatus"] = {"metadata": {}, "code": code}
        if status_message:
            ev["responseStatus"].update(status="Failure", message=status_message, reason=reason)
    if object_ref:
        ev["objectRef"] = object_ref
    if request_object is not None and level in ("Request", "RequestResponse"):
        ev["requestObject"] = request_object
    if response_object is not None and level == "RequestResponse" and stage == "ResponseComplete":
        ev["responseObject"] = response_object
    return ev
