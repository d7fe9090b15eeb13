"""From a request's context to its audit events: the level the audit policy gives it, the stage,
its request and response objects (redacted and bounded), and the annotations of every decision.

kube-apiserver's stage semantics: every request ends with one ResponseComplete event; a
long-running one (watch, logs, exec/attach/port-forward, proxy) gets a ResponseStarted event when
its response starts; a failure inside the gateway is recorded at stage Panic. A change (and any
request the policy records at Request level or above) gets a RequestReceived event written ahead:
through to the file before it is forwarded, so a crash cannot leave an executed change unrecorded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from kubegate.audit import events, redact
from kubegate.audit.policy import Attributes, Decision, Policy

from .clusters.upstreams import CLUSTER_PREFIX
from .context import GateContext
from .request import bodies
from .request.info import RequestInfo, classify
from .request.query import Query

def long_running(ctx: GateContext) -> bool:
    return ctx.info is not None and ctx.info.long_running


def info_of(ctx: GateContext) -> RequestInfo | None:
    """What the request is, as classify read it; for a request refused before that (a 401, a bad
    header), read for the record alone, nothing acted on: the verb and object kube-apiserver would
    record. None when even that cannot be read (a path or query Go would refuse)."""
    if ctx.info is not None:
        return ctx.info
    if ctx.record_info is None:
        path = ctx.path or ctx.request.raw_path
        if not ctx.path and path.startswith(CLUSTER_PREFIX):  # not routed yet: /clusters/<name>/...
            path = "/" + path[len(CLUSTER_PREFIX):].partition("/")[2]
        try:
            ctx.record_info = classify(ctx.request.method, path, Query.parse(ctx.request.query))
        except Exception:  # noqa: BLE001 - only the record is at stake, and it is written without
            return None
    return ctx.record_info


@dataclass
class Recorder:
    policy: Policy = field(default_factory=Policy)
    max_object_bytes: int = 64 * 1024
    redact_fields: tuple[str, ...] = ()
    # The policy sets in force (content hashes), named in every event: which policy decided.
    revisions: Callable[[], dict[str, str]] = lambda: {}

    def decide(self, ctx: GateContext) -> Decision:
        if not isinstance(ctx.audit_decision, Decision):
            info, identity = info_of(ctx), ctx.identity
            ctx.audit_decision = self.policy.decide(Attributes(
                user=identity.user if identity else "system:anonymous",
                groups=identity.upstream_groups() if identity else ("system:unauthenticated",),
                verb=info.verb if info else ctx.request.method.lower(),
                is_resource=bool(info and info.is_resource),
                api_group=info.api_group if info else "", resource=info.resource if info else "",
                subresource=info.subresource if info else "", namespace=info.namespace if info else "",
                name=info.name if info else "", path=info.path if info else ctx.request.raw_path))
        return ctx.audit_decision

    def writes_ahead(self, ctx: GateContext) -> bool:
        """Whether the request's RequestReceived record must reach the file before it is forwarded:
        every change, and what the policy records with its request (whatever omitStages says: it is
        what shows a request that never completed)."""
        level = self.decide(ctx).level
        return level != "None" and ((ctx.info is not None and ctx.info.mutating) or
                                    level in ("Request", "RequestResponse"))

    def wants_response_body(self, ctx: GateContext) -> bool:
        return self.decide(ctx).level == "RequestResponse" and not long_running(ctx)

    def _object(self, ctx: GateContext, obj: Any, which: str, annotations: dict[str, str]) -> Any:
        if obj is None:
            return None
        decision = self.decide(ctx)
        info = info_of(ctx)
        obj = redact.redact(obj, resource=info.resource if info else "", subresource=info.subresource if info else "",
                            fields=self.redact_fields)
        if decision.omit_managed_fields:
            obj = redact.without_managed_fields(obj)
        obj, marker = redact.bounded(obj, self.max_object_bytes)
        if marker:
            annotations[f"kubegate.io/{which}"] = marker
        return obj

    def _request_object(self, ctx: GateContext) -> Any:
        if not ctx.request.body:
            return None
        view = ctx.body_view if isinstance(ctx.body_view, bodies.Body) else \
            bodies.read(ctx.request.headers.get("Content-Type"), ctx.request.body)
        if view.data is not None:
            return view.data
        return view.obj

    def _response_object(self, ctx: GateContext) -> Any:
        if ctx.response_body is None:
            return None
        if ctx.response_truncated:
            return {"kubegate.io/truncated": f"the response was larger than {self.max_object_bytes} bytes"}
        try:
            return json.loads(bytes(ctx.response_body))
        except ValueError:
            return None

    def event(self, ctx: GateContext, stage: str, code: int, message: str, reason: str,
              *, ahead: bool = False) -> dict[str, Any] | None:
        """The event for `stage`, or None when the policy records none (level None, omitted stage;
        `ahead`: a write-ahead record, written whatever omitStages says)."""
        decision = self.decide(ctx)
        if decision.level == "None" or (stage in decision.omit_stages and not ahead):
            return None
        info = info_of(ctx)
        annotations = {"kubegate.io/decision": ctx.decision, **self.revisions(), **ctx.annotations}
        if ctx.denial is not None:
            annotations["kubegate.io/stage"] = ctx.denial.stage
            annotations.update(ctx.denial.annotations)
        object_ref = None
        if info is not None and info.is_resource:
            object_ref = {k: v for k, v in {
                "resource": info.resource, "namespace": info.namespace, "name": info.name,
                "apiGroup": info.api_group, "apiVersion": info.api_version, "subresource": info.subresource,
            }.items() if v}
        uri = redact.redact_uri(ctx.request.raw_path + (f"?{ctx.request.query}" if ctx.request.query else ""))
        request_object = response_object = None
        if decision.level in ("Request", "RequestResponse"):
            request_object = self._object(ctx, self._request_object(ctx), "request-object", annotations)
        if decision.level == "RequestResponse" and stage == "ResponseComplete":
            response_object = self._object(ctx, self._response_object(ctx), "response-object", annotations)
        return events.event(
            audit_id=ctx.request_id, stage=stage, request_uri=uri,
            verb=info.verb if info else ctx.request.method.lower(),
            user=ctx.identity.to_audit() if ctx.identity else None, source_ips=[ctx.request.client_ip],
            user_agent=ctx.request.user_agent, object_ref=object_ref, code=code, status_message=message,
            reason=reason, received=ctx.received, now=time.time(), annotations=annotations,
            level=decision.level, request_object=request_object, response_object=response_object)
