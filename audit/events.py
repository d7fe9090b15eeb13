"""Building audit.k8s.io/v1 Events from what the gateway knows about a request."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any


def timestamp(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _step(prefix: str, kind: str, resource: str, name: str, uri: str, actor: str, now: float,
          annotations: dict[str, str]) -> dict[str, Any]:
    """A step of one of kubegate's own objects (access request, ticket, breaker), recorded apart
    from the HTTP request that may have caused it."""
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": f"{prefix}-{kind}-{uuid.uuid4()}", "stage": "ResponseComplete", "verb": kind,
        "requestURI": uri, "user": {"username": actor},
        "objectRef": {"resource": resource, "apiGroup": "kubegate.io", "name": name},
        "requestReceivedTimestamp": timestamp(now), "stageTimestamp": timestamp(now),
        "annotations": {f"kubegate.io/{prefix}-event": kind, **annotations},
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


def event(*, audit_id: str, stage: str, request_uri: str, verb: str, user: dict[str, Any] | None,
          source_ips: list[str], user_agent: str, object_ref: dict[str, str] | None, code: int,
          status_message: str, reason: str, received: float, now: float,
          annotations: dict[str, str]) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": audit_id, "stage": stage, "requestURI": request_uri, "verb": verb,
        "user": user or {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
        "sourceIPs": source_ips, "userAgent": user_agent,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": timestamp(received), "stageTimestamp": timestamp(now),
        "annotations": annotations,
    }
    if user:
        # kubegate forwards as the caller: the upstream sees this identity impersonated.
        ev["impersonatedUser"] = user
    if object_ref:
        ev["objectRef"] = object_ref
    if status_message:
        ev["responseStatus"].update(status="Failure", message=status_message, reason=reason)
    return ev
