"""Rollout order, enforced: a governed workload's new pod template reaches a later stage's cluster
only once it has run, all replicas ready, for each earlier stage's soak in every cluster of every
earlier stage — read live from those clusters (as the requester) — or with a ticket.

What counts as a change: the pod template of a Deployment, StatefulSet, DaemonSet (or a custom kind
with its template's path) differs from the live one's, however the request is written (apply,
patch, `set image`, `edit`, update: judged on the object it leaves). A scale, a label or any other
field is not a rollout. Allowed without looking: a first deploy (the workload does not exist in
this cluster yet) and a rollback (a ReplicaSet the Deployment owns here already ran that
template). The refusal names each stage, cluster and what is missing:
`staging/staging-1: image shop/web:1.8 not seen (it runs shop/web:1.7); staging/staging-2: ready
for 12 min of 30`. A stage's `verify` webhooks (webhooks.yaml) are asked, with the same ChangeReview
plus `rollout`, before its template may go further.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Awaitable, Callable

from ..clusters.client import UpstreamClient, UpstreamError
from ..clusters.upstreams import Upstream
from ..context import GateContext
from ..errors import Denial
from ..request import bodies
from ..request.query import Query
from . import lookups
from .rollout_policy import Rollout, RolloutPolicy, Stage
from .written import judged

PolicySource = Callable[[], RolloutPolicy]
# Asks a risk webhook (by name) about the request, with `rollout` added to its ChangeReview; returns
# (allowed, reason). Raises when the webhook cannot answer.
Verifier = Callable[[GateContext, str, dict[str, Any]], Awaitable[tuple[bool, str]]]


def _template(obj: Any, path: str) -> Any:
    found = bodies.lookup(obj, path)
    return None if bodies.missing(found) else found


def _normal(template: Any) -> str:
    """A template as compared across clusters and revisions: without what differs by itself (the
    pod-template-hash label a ReplicaSet adds, an empty creationTimestamp)."""
    t = json.loads(json.dumps(template or {}))
    meta = t.get("metadata") if isinstance(t, dict) else None
    if isinstance(meta, dict):
        meta.pop("creationTimestamp", None)
        labels = meta.get("labels")
        if isinstance(labels, dict):
            labels.pop("pod-template-hash", None)
            if not labels:
                meta.pop("labels")
        if not meta:
            t.pop("metadata")
    return json.dumps(t, sort_keys=True)


def _images(template: Any) -> list[str]:
    spec = (template or {}).get("spec") or {}
    return [str(c.get("image", "")) for key in ("initContainers", "containers") for c in spec.get(key) or []
            if isinstance(c, dict)]


def _since(obj: dict[str, Any]) -> float | None:
    """Since when the workload has been available (its Available condition's last transition)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Available" and c.get("status") == "True":
            try:
                return datetime.fromisoformat(str(c.get("lastTransitionTime")).replace("Z", "+00:00")).timestamp()
            except ValueError:
                return None
    return None


def _readiness(kind: str, obj: dict[str, Any]) -> str:
    """"" when every replica runs the current template and is ready; else what is not."""
    status, spec, meta = obj.get("status") or {}, obj.get("spec") or {}, obj.get("metadata") or {}
    if int(status.get("observedGeneration", 0) or 0) < int(meta.get("generation", 0) or 0):
        return "its controller has not seen the change yet"
    if kind == "daemonsets.apps":
        want, ready = int(status.get("desiredNumberScheduled", 0) or 0), int(status.get("numberReady", 0) or 0)
        updated = int(status.get("updatedNumberScheduled", 0) or 0)
    else:
        want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        ready, updated = int(status.get("readyReplicas", 0) or 0), int(status.get("updatedReplicas", want) or 0)
    if ready < want or updated < want:
        return f"{min(ready, updated)} of {want} replicas ready on it"
    return ""


class RolloutGate:
    name = "rollout"

    def __init__(self, policy: PolicySource, clusters: Callable[[], list[Upstream]], client: UpstreamClient, *,
                 verify: Verifier | None = None, clock: Callable[[], float] = time.time) -> None:
        self.policy, self.clusters, self.client, self.verify, self.clock = policy, clusters, client, verify, clock

    async def __call__(self, ctx: GateContext) -> None:
        info = ctx.info
        if info is None or ctx.upstream is None or ctx.identity is None or not info.is_resource \
                or info.verb not in ("update", "patch") or info.subresource:
            return
        policy = self.policy()
        cluster = ctx.upstream.name
        for rollout in policy.rollouts:
            if not rollout.governs(info.group_resource, info.namespace):
                continue
            here = next((i for i, s in enumerate(rollout.stages) if s.has(cluster, policy.labels_of(cluster))), None)
            if not here:  # not in this rollout's clusters, or its first stage: nothing comes before
                continue
            await self._judge(ctx, policy, rollout, here)

    async def _judge(self, ctx: GateContext, policy: RolloutPolicy, rollout: Rollout, here: int) -> None:
        assert ctx.info is not None and ctx.upstream is not None and ctx.identity is not None
        info, path = ctx.info, rollout.template_path(ctx.info.group_resource)
        try:
            live = await lookups.live_object(ctx, self.client, info.object_path)
        except UpstreamError as e:
            if e.status == 404:
                ctx.annotations["kubegate.io/rollout"] = f"{rollout.name}: a first deploy"
                return
            return self._hold(ctx, rollout, here, [f"the live {info.resource} could not be read ({e.message})"])
        if not isinstance(live, dict):
            return
        labels = (live.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in rollout.workload_labels):
            return
        written = await judged(ctx, self.client)
        if not written.readable or not isinstance(written.obj, dict):
            return self._hold(ctx, rollout, here, [f"the object it leaves cannot be read ({written.error})"])
        new = _template(written.obj, path)
        if _normal(new) == _normal(_template(live, path)):
            return  # the pod template is unchanged: a scale, a label — not a rollout
        if await self._rollback(ctx, live, new):
            ctx.annotations["kubegate.io/rollout"] = f"{rollout.name}: a rollback to a template that ran here"
            return
        missing: list[str] = []
        for stage in rollout.stages[:here]:
            members = [u for u in self.clusters() if stage.has(u.name, policy.labels_of(u.name))]
            if not members:
                missing.append(f"{stage.name}: no cluster of it is behind this gateway")
            for upstream in members:
                if problem := await self._ran(ctx, upstream, info.object_path, info.group_resource, path, new, stage):
                    missing.append(f"{stage.name}/{upstream.name}: {problem}")
            if not missing and stage.verify:
                missing += await self._verified(ctx, rollout, stage, here, new)
        if missing:
            return self._hold(ctx, rollout, here, missing)
        ctx.annotations["kubegate.io/rollout"] = f"{rollout.name}: ran in every earlier stage"

    def _hold(self, ctx: GateContext, rollout: Rollout, here: int, missing: list[str]) -> None:
        stage = rollout.stages[here]
        text = (f"rollout {rollout.name}: a new pod template for stage {stage.name} must first run ready in the "
                f"earlier stages: {'; '.join(missing)}")
        ctx.annotations["kubegate.io/rollout"] = text[:1000]
        ctx.annotations[f"kubegate.io/rollout.{rollout.name}"] = rollout.outcome
        if rollout.outcome == "deny":
            raise Denial(403, f"kubegate: refused by {text}", "Forbidden")
        ctx.approval_reasons.append(text)

    async def _ran(self, ctx: GateContext, upstream: Upstream, object_path: str, kind: str, path: str, new: Any,
                   stage: Stage) -> str:
        """"" when NEW has run ready in UPSTREAM for the stage's soak; else what is missing."""
        assert ctx.identity is not None
        try:
            found = await self.client.get_object(upstream, ctx.identity, object_path, ctx.request_id)
        except UpstreamError as e:
            return "not deployed there" if e.status == 404 else f"cannot be read ({e.message})"
        theirs = _template(found, path)
        if _normal(theirs) != _normal(new):
            unseen = [i for i in _images(new) if i not in _images(theirs)]
            if unseen:
                return f"image {', '.join(unseen)} not seen (it runs {', '.join(_images(theirs)) or 'nothing'})"
            return "this pod template has not run there (it runs another)"
        if why := _readiness(kind, found):
            return why
        if stage.soak_seconds:
            since = _since(found)
            if since is None:
                return "cannot tell since when it is ready (no Available condition)"
            ready_for = self.clock() - since
            if ready_for < stage.soak_seconds:
                return f"ready for {int(ready_for // 60)} min of {stage.soak_seconds / 60:g}"
        return ""

    async def _rollback(self, ctx: GateContext, live: dict[str, Any], new: Any) -> bool:
        """Whether a ReplicaSet this Deployment owns here already ran NEW (its revision history)."""
        assert ctx.info is not None and ctx.upstream is not None and ctx.identity is not None
        if ctx.info.group_resource != "deployments.apps":
            return False
        uid = (live.get("metadata") or {}).get("uid")
        try:
            pages = self.client.pages(ctx.upstream, ctx.identity,
                                      f"/apis/apps/v1/namespaces/{ctx.info.namespace}/replicasets", Query(),
                                      ctx.request_id)
            async for page in pages:
                for rs in page:
                    owners = (rs.get("metadata") or {}).get("ownerReferences") or []
                    if any(o.get("uid") == uid for o in owners) and \
                            _normal((rs.get("spec") or {}).get("template")) == _normal(new):
                        return True
        except UpstreamError:
            return False  # cannot tell: not taken for a rollback
        return False

    async def _verified(self, ctx: GateContext, rollout: Rollout, stage: Stage, here: int, new: Any) -> list[str]:
        if self.verify is None:
            return [f"{stage.name}: verification webhooks cannot be asked"]
        assert ctx.info is not None and ctx.upstream is not None and ctx.identity is not None
        review = {"rollout": rollout.name, "verifiedStage": stage.name, "targetStage": rollout.stages[here].name,
                  "cluster": ctx.upstream.name, "namespace": ctx.info.namespace, "name": ctx.info.name,
                  "resource": ctx.info.group_resource, "images": _images(new)}
        out = []
        for hook in stage.verify:
            try:
                allowed, reason = await self.verify(ctx, hook, review)
            except Exception as e:  # noqa: BLE001 - a checker that fails is not a pass
                out.append(f"{stage.name}: verification {hook} failed ({e or type(e).__name__})")
                continue
            if not allowed:
                out.append(f"{stage.name}: verification {hook} says no" + (f" ({reason})" if reason else ""))
        return out

