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
        at: "2026-12-24T12:00:00+00:00"       # when (freeze windows); default: the file's `now:`
        expect: approval                      # allow | deny | approval
        by: scale-to-zero-in-production       # optional: the rule or window that must decide

The cases run through the same gate code as the gateway (freeze, then rules); the live object
comes from the case (`live`, with `live_labels` as its labels; none given: an empty object), a
patch is judged by what it leaves of it, and `more_than` counters start empty for every case.
"""

from __future__ import annotations

import asyncio
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
from ..context import GateContext, RequestView
from ..errors import Denial
from ..identity.identity import Identity
from ..request.info import RequestInfo
from ..request.query import Query
from ..state.store import MemoryStore
from ..clusters.client import UpstreamClient, UpstreamError
from ..clusters.upstreams import Upstream

_KEYS = {"name", "user", "groups", "cluster", "verb", "resource", "namespace", "object", "content_type", "body",
         "query", "kubectl_command", "live_labels", "live", "at", "expect", "by", "session"}
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


class _LiveObject(UpstreamClient):
    """The live object a case describes, instead of a cluster."""

    def __init__(self, live: dict[str, Any] | None, labels: dict[str, str] | None) -> None:
        super().__init__()
        self.live = json.loads(json.dumps(live or {}, default=str))  # a copy, as JSON has it
        if labels is not None:
            self.live.setdefault("metadata", {})["labels"] = labels

    async def get_object(self, upstream: Upstream, identity: Identity, path: str, request_id: str) -> Any:
        return self.live

    async def pages(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> AsyncIterator[list[Any]]:
        yield [self.live] if self.live else []

    async def count(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> int:
        # A case describes no cluster: a non-blank selector is taken to narrow what it selects.
        return 1 if any(query.selector(k) for k in ("labelSelector", "fieldSelector")) else 2


def load_cases(directory: Path) -> tuple[list[GateCase], list[str]]:
    found, problems = authz_cases.read_case_files(directory, _KEYS, authz_cases.REQUIRED, EXPECTS)
    return [GateCase(where, raw) for where, raw in found], problems


def _body(raw: dict[str, Any]) -> bytes:
    if "body" not in raw:
        return b""
    if raw.get("content_type", "").endswith("yaml"):
        return yaml.safe_dump(raw["body"]).encode()
    return json.dumps(raw["body"]).encode()


async def _run_one(policy: ChangePolicy, case: GateCase, default_now: float | None) -> GateOutcome:
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
    try:
        await FreezeGate(source, lambda: now)(ctx)
        await RulesGate(source, MemoryStore(), _LiveObject(live if isinstance(live, dict) else None, labels), clock=lambda: now)(ctx)
    except Denial as d:
        got, message = "deny", d.message
    else:
        got = "approval" if ctx.approval_reasons else "allow"
        message = "; ".join(ctx.approval_reasons)
    decided_by = [k.removeprefix("kubegate.io/rule.") for k in ctx.annotations if k.startswith("kubegate.io/rule.")]
    decided_by += [ctx.annotations["kubegate.io/freeze"]] if "kubegate.io/freeze" in ctx.annotations else []
    failure = ""
    if got != raw["expect"]:
        failure = f"expected {raw['expect']}, got {got}" + (f" ({message})" if message else "")
    elif raw.get("by") and raw["by"] not in decided_by:
        failure = f"expected it decided by {raw['by']}, got {', '.join(decided_by) or 'no rule or window'}"
    return GateOutcome(case, got, ", ".join(decided_by), failure)


def run(policy: ChangePolicy, cases: list[GateCase], now: float | None = None) -> list[GateOutcome]:
    """Each case at its `at:` (or its file's `now:`), else at `now`."""
    async def main() -> list[GateOutcome]:
        return [await _run_one(policy, c, now) for c in cases]
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
