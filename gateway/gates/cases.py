"""`kubegate policy test` for the change gates: cases beside `policies/gates/tests/*.yaml`.

    cases:
      - name: scaling ledger to zero needs a second person
        user: dan
        groups: [team-payments]
        cluster: hz-1
        verb: patch
        resource: deployments.apps/scale      # resource[.group][/subresource]
        namespace: payments
        object: ledger
        content_type: application/merge-patch+json   # default application/json
        body: {spec: {replicas: 0}}           # written as YAML, sent as the content type says
        query: labelSelector=app%3Dweb        # optional
        kubectl_command: kubectl delete       # optional: kubectl's Kubectl-Command header
        session: 3f9a1c                       # optional: made with this session token (a webshell terminal)
        live_labels: {kubegate.io/protected: "true"}   # optional: the live object's labels
        live: {spec: {replicas: 3}}           # optional: the live object a patch applies to
        objects:                              # optional: the cluster around it, for blast radius checks
          - {apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: shop, uid: d1}, spec: {replicas: 3}}
          - {apiVersion: v1, kind: Pod, metadata: {name: web-1, namespace: shop, labels: {app: web}}, status: {...}}
        at: "2026-12-24T12:00:00+00:00"       # when (freeze windows); default: the file's `now:`
        expect: approval                      # allow | deny | approval
        by: scale-to-zero-in-production       # optional: the rule or window that must decide

The cases run through the same gate code as the gateway (freeze, then rules); the live object
comes from the case (`live`, with `live_labels` as its labels; none given: an empty object), a
patch is judged by what it leaves of it, and `more_than` counters start empty for every case.
With `objects`, the case describes a cluster: the blast radius (`when: {consequence: ...}`) is
read from them as from a real one — the object the request names among them, lists by path and
label selector, discovery of their kinds; the live object is then the one the request names.
With `clusters` (cluster name -> its objects) it describes the other clusters behind the gateway
too, and rollout order (rollouts.yaml) is judged against them: `by: <rollout name>`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import yaml
from multidict import CIMultiDict

from ..authz import cases as authz_cases
from .change import FreezeGate, RulesGate
from .change_policy import ChangePolicy
from .rollout import RolloutGate
from .rollout_policy import RolloutPolicy
from ..context import GateContext, RequestView
from ..errors import Denial
from ..identity.identity import Identity
from ..request import bodies, deleteoptions
from ..request.info import RequestInfo
from ..request.query import Query
from ..state.store import MemoryStore
from ..clusters.client import UpstreamClient, UpstreamError
from ..clusters.upstreams import Upstream

_KEYS = {"name", "user", "groups", "cluster", "verb", "resource", "namespace", "object", "content_type", "body",
         "query", "kubectl_command", "live_labels", "live", "at", "expect", "by", "session", "objects", "clusters"}
# Plurals of the kinds a case's objects may have (others: the kind in lower case, plus "s").
_PLURALS = {"Endpoints": "endpoints", "NetworkPolicy": "networkpolicies", "Ingress": "ingresses",
            "PodDisruptionBudget": "poddisruptionbudgets", "StorageClass": "storageclasses"}
EXPECTS = ("allow", "deny", "approval")


@dataclass
class GateCase:
    source: str
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.raw["name"])


@dataclass
class GateOutcome:
    case: GateCase
    got: str
    by: str
    failure: str

    @property
    def passed(self) -> bool:
        return not self.failure


class _Fleet(UpstreamClient):
    """The clusters a case describes, each answered by its own _LiveObject."""

    def __init__(self, clusters: dict[str, "_LiveObject"]) -> None:
        super().__init__()
        self.clusters = clusters

    async def get_object(self, upstream: Upstream, identity: Identity, path: str, request_id: str) -> Any:
        return await self.clusters[upstream.name].get_object(upstream, identity, path, request_id)

    async def pages(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> AsyncIterator[list[Any]]:
        yield (await self.clusters[upstream.name].list_page(upstream, identity, path, [], request_id))["items"]


class _LiveObject(UpstreamClient):
    """The live object a case describes, instead of a cluster."""

    def __init__(self, live: dict[str, Any] | None, labels: dict[str, str] | None,
                 objects: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.live = json.loads(json.dumps(live or {}, default=str))  # a copy, as JSON has it
        if labels is not None:
            self.live.setdefault("metadata", {})["labels"] = labels
        self.objects = {_path_of(o): o for o in json.loads(json.dumps(objects or [], default=str))
                        if isinstance(o, dict)} if objects is not None else None

    async def get_object(self, upstream: Upstream, identity: Identity, path: str, request_id: str) -> Any:
        if self.objects is None:
            return self.live
        if path == "/apis":
            groups = sorted({str(o.get("apiVersion", "")).split("/")[0] for o in self.objects.values()
                             if "/" in str(o.get("apiVersion", ""))})
            return {"groups": [{"name": g, "preferredVersion": {"version": "v1"}} for g in groups]}
        kinds = [o for o in self.objects.values() if _collection(_path_of(o)).startswith(path + "/")
                 or _collection(_path_of(o)).rsplit("/", 1)[0] == path]
        if path.startswith(("/api/v", "/apis/")) and path.count("/") <= 3 and kinds:  # discovery of a group version
            return {"resources": [{"name": _plural(o), "kind": o["kind"], "namespaced": bool(o["metadata"].get(
                "namespace")), "verbs": ["list"]} for o in {o["kind"]: o for o in kinds}.values()]}
        if path.endswith("/scale") and path[:-len("/scale")] in self.objects:  # as the apiserver serves it
            parent = self.objects[path[:-len("/scale")]]
            return {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": parent.get("metadata") or {},
                    "spec": {"replicas": (parent.get("spec") or {}).get("replicas", 1)}}
        if path not in self.objects:
            raise UpstreamError(404, f"{path} not found")
        return self.objects[path]

    async def list_page(self, upstream: Upstream, identity: Identity, path: str, params: list[tuple[str, str]],
                        request_id: str) -> Any:
        found = [o for p, o in sorted((self.objects or {}).items())
                 if _collection(p) == path or (_cluster_wide(path) and _without_namespace(_collection(p)) == path)]
        for key, value in params:
            if key == "labelSelector" and value:
                wanted = dict(term.split("=", 1) for term in value.split(",") if "=" in term)
                found = [o for o in found if all((o["metadata"].get("labels") or {}).get(k) == v
                                                 for k, v in wanted.items())]
            if key == "fieldSelector" and value.startswith("spec.nodeName="):
                found = [o for o in found if (o.get("spec") or {}).get("nodeName") == value.split("=", 1)[1]]
        return {"items": found, "metadata": {}}

    async def pages(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> AsyncIterator[list[Any]]:
        yield [self.live] if self.live else []

    async def count(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> int:
        # A case describes no cluster: a non-blank selector is taken to narrow what it selects.
        return 1 if any(query.selector(k) for k in ("labelSelector", "fieldSelector")) else 2


def _plural(obj: dict[str, Any]) -> str:
    kind = str(obj.get("kind", ""))
    return _PLURALS.get(kind, kind.lower() + "s")


def _path_of(obj: dict[str, Any]) -> str:
    version = str(obj.get("apiVersion", "v1"))
    base = f"/apis/{version}" if "/" in version else f"/api/{version}"
    meta = obj.get("metadata") or {}
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{base}{ns}/{_plural(obj)}/{meta.get('name', '')}"


def _collection(path: str) -> str:
    return path.rsplit("/", 1)[0]


def _without_namespace(collection: str) -> str:
    parts = collection.split("/")
    if "namespaces" in parts[:-1]:
        i = parts.index("namespaces")
        parts = parts[:i] + parts[i + 2:]
    return "/".join(parts)


def _cluster_wide(path: str) -> bool:
    return "/namespaces/" not in path


def load_cases(directory: Path) -> tuple[list[GateCase], list[str]]:
    found, problems = authz_cases.read_case_files(directory, _KEYS, authz_cases.REQUIRED, EXPECTS)
    return [GateCase(where, raw) for where, raw in found], problems


def _body(raw: dict[str, Any]) -> bytes:
    if "body" not in raw:
        return b""
    if raw.get("content_type", "").endswith("yaml"):
        return yaml.safe_dump(raw["body"]).encode()
    return json.dumps(raw["body"]).encode()


async def _run_one(policy: ChangePolicy, case: GateCase, default_now: float | None,
                   rollouts: RolloutPolicy | None = None) -> GateOutcome:
    raw = case.raw
    main, _, sub = str(raw["resource"]).partition("/")
    resource, _, group = main.partition(".")
    info = RequestInfo(path="", verb=str(raw["verb"]), is_resource=True, api_group=group,
                       namespace=str(raw.get("namespace", "")), resource=resource, subresource=sub,
                       name=str(raw.get("object", "")))
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": str(raw.get("content_type", "application/json"))})
    if raw.get("kubectl_command"):
        headers["Kubectl-Command"] = str(raw["kubectl_command"])
    ctx = GateContext(RequestView("POST", "/", str(raw.get("query", "")), headers, _body(raw), "127.0.0.1"))
    ctx.identity = Identity(str(raw["user"]), tuple(str(g) for g in raw.get("groups") or []),
                            session=str(raw.get("session", "")))
    ctx.info = info
    ctx.query = Query.parse(ctx.request.query)
    ctx.upstream = Upstream(str(raw["cluster"]), "127.0.0.1", 443, "", "", Path("/dev/null"))
    at = raw.get("at")
    if at:
        now = (at if isinstance(at, datetime) else datetime.fromisoformat(str(at))).timestamp()
    else:
        now = default_now if default_now is not None else datetime.now(timezone.utc).timestamp()
    source = lambda: policy  # noqa: E731
    labels = raw.get("live_labels")
    live = raw.get("live")
    objects = raw.get("objects")
    cluster = _LiveObject(live if isinstance(live, dict) else None, labels,
                          objects if isinstance(objects, list) else None)
    if cluster.objects is not None:  # the request's path, as the gateway would have read it
        ctx.info = info = dataclasses.replace(info, path=_request_path(info))
        ctx.path = info.path
    if info.verb in ("delete", "deletecollection"):  # as classify reads them: the body's, else the query's
        try:
            ctx.delete_options = deleteoptions.for_delete(ctx.query, bodies.read(
                ctx.request.headers.get("Content-Type"), ctx.request.body))
        except Denial as d:
            return GateOutcome(case, "deny", "", "" if raw["expect"] == "deny" else f"the case's delete: {d.message}")
    found = raw.get("clusters")
    others: dict[str, Any] = found if isinstance(found, dict) else {}
    fleet = _Fleet({str(name): _LiveObject(None, None, objs if isinstance(objs, list) else [])
                    for name, objs in others.items()} | {ctx.upstream.name: cluster})
    try:
        await FreezeGate(source, lambda: now)(ctx)
        await RulesGate(source, MemoryStore(), cluster, clock=lambda: now)(ctx)
        if rollouts is not None and rollouts.rollouts:
            upstreams = [Upstream(name, "127.0.0.1", 443, "", "", Path("/dev/null")) for name in fleet.clusters]
            await RolloutGate(lambda: rollouts, lambda: upstreams, fleet, clock=lambda: now)(ctx)
    except Denial as d:
        got, message = "deny", d.message
    else:
        got = "approval" if ctx.approval_reasons else "allow"
        message = "; ".join(ctx.approval_reasons)
    decided_by = [k.removeprefix("kubegate.io/rule.") for k in ctx.annotations if k.startswith("kubegate.io/rule.")]
    decided_by += [ctx.annotations["kubegate.io/freeze"]] if "kubegate.io/freeze" in ctx.annotations else []
    decided_by += [k.removeprefix("kubegate.io/rollout.") for k in ctx.annotations
                   if k.startswith("kubegate.io/rollout.")]
    failure = ""
    if got != raw["expect"]:
        failure = f"expected {raw['expect']}, got {got}" + (f" ({message})" if message else "")
    elif raw.get("by") and raw["by"] not in decided_by:
        failure = f"expected it decided by {raw['by']}, got {', '.join(decided_by) or 'no rule or window'}"
    return GateOutcome(case, got, ", ".join(decided_by), failure)


def _request_path(info: RequestInfo) -> str:
    group = {"apps": "/apis/apps/v1", "policy": "/apis/policy/v1", "batch": "/apis/batch/v1",
             "apiextensions.k8s.io": "/apis/apiextensions.k8s.io/v1"}.get(info.api_group,
                                                                          f"/apis/{info.api_group}/v1")
    base = "/api/v1" if not info.api_group else group
    ns = f"/namespaces/{info.namespace}" if info.namespace and info.resource != "namespaces" else ""
    path = f"{base}{ns}/{info.resource}"
    if info.name:
        path += f"/{info.name}"
    if info.subresource:
        path += f"/{info.subresource}"
    return path


def run(policy: ChangePolicy, cases: list[GateCase], now: float | None = None,
        rollouts: RolloutPolicy | None = None) -> list[GateOutcome]:
    """Each case at its `at:` (or its file's `now:`), else at `now`."""
    async def main() -> list[GateOutcome]:
        return [await _run_one(policy, c, now, rollouts) for c in cases]
    return asyncio.run(main())


def describe(r: dict[str, Any]) -> str:
    where = f"{r['cluster']}:{r.get('namespace', '')}".rstrip(":")
    return f"{r['user']} {r['verb']} {r['resource']} @{where}"


def report(outcomes: list[GateOutcome]) -> str:
    rows = [("#", "CASE", "REQUEST", "EXPECT", "GOT", "BY", "RESULT")]
    for i, o in enumerate(outcomes, 1):
        r = o.case.raw
        request = describe(r)
        rows.append((str(i), o.case.name, request, str(r["expect"]), o.got, o.by or "-", "Pass" if o.passed else "Fail"))
    return authz_cases.table(rows, [(o.case.source, o.case.name, o.failure) for o in outcomes if not o.passed])
