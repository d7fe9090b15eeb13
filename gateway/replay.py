"""Replay recorded requests through policy sets: which decisions a policy change would flip.

Each request of an audit log (one per auditID) is judged again by the authorization policy and by
the change gates whose inputs its event carries: freeze windows (the time it was received) and the
rule library (verb, object, query, the `Kubectl-Command` header the gateway keeps as the
`kubegate.io/kubectl-command` annotation, and the request body when the event was recorded at
level Request or above), with the same code the gateway runs. The baseline is a second policy set
judged the same way (`--against OLD`), or else what the gateway recorded (its
`authorization.k8s.io/decision` and `kubegate.io/rule.*` / `kubegate.io/freeze` annotations).

What an event does not carry is not guessed: a rule that needs the live object (`object_labels`,
a patch's result), the number of objects a selector selects or a blast radius (`consequence`:
what the cluster held at the time) is left out of that request's
replay, on both sides, and counted as not replayed, per rule, with the reason. Rule counters
(`more_than`) are replayed in the log's order, on each request's own time. Budgets, QPS limits,
webhooks and approvals depend on state and on outside parties: they are not replayed. Requests
the policy never judged (refused before authorization, kubegate's own API) are skipped and
counted. Temporary grants (`kubegate access`) are not policy files: a request one allowed is judged
as the files decide it, so against the record (no --against) it shows as a flip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Iterator

from multidict import CIMultiDict

from .authz import reviews
from .authz.authorizer import Authorizer
from .authz.policy import PolicySet
from .clusters.client import SELECTORS, UpstreamClient, UpstreamError
from .clusters.upstreams import CLUSTER_PREFIX, Upstream
from .context import GateContext, RequestView
from .errors import Denial
from .gates.change import FreezeGate, RulesGate
from .gates.change_policy import ChangePolicy, Rule
from .identity.identity import Identity
from .request.info import RequestInfo
from .request.query import Query
from .state.store import MemoryStore

OUTCOMES = ("allow", "approval", "deny")  # from least to most restrictive


@dataclass(frozen=True)
class Recorded:
    """One request as its audit event describes it."""

    audit_id: str
    at: float
    user: str
    groups: tuple[str, ...]
    cluster: str
    info: RequestInfo
    query: str
    body: Any  # the request object, when the event was recorded with it; else None
    annotations: dict[str, str]
    where: str  # FILE:LINE of the event
    identity: Identity | None  # None: the recorded user or groups could not be a kubegate identity

    def describe(self) -> str:
        info = self.info
        what = info.object_ref if info.is_resource else info.path
        name = f" {info.name}" if info.name else ""
        ns = f" -n {info.namespace}" if info.namespace else ""
        return f"{self.user} {info.verb} {what}{name}{ns} @{self.cluster}"


@dataclass(frozen=True)
class Verdict:
    outcome: str  # allow | approval | deny
    by: str  # "authz <id>", "rule <id>", "freeze <name>", or "" (allowed, no gate fired)


def read(paths: Iterable[Path]) -> tuple[list[Recorded], Counter[str]]:
    """The requests of the logs, in order, and why the others were skipped (reason → count).
    Unreadable lines are skipped and counted too: replay is a report, not a verifier (that is
    `kubegate audit verify`)."""
    latest: dict[str, tuple[dict[str, Any], str]] = {}
    skipped: Counter[str] = Counter()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    skipped["lines that are not JSON"] += 1
                    continue
                if not isinstance(event, dict) or event.get("kind") != "Event":
                    skipped["lines that are not audit events"] += 1
                    continue
                audit_id = str(event.get("auditID", ""))
                annotations = event.get("annotations") or {}
                if annotations.get("kubegate.io/event") == "log-opened" or not audit_id:
                    continue
                # A long-running request has a ResponseStarted and a ResponseComplete event: one request.
                latest[audit_id] = (event, f"{path}:{n}")
    requests = []
    identities: dict[tuple[str, tuple[str, ...]], Identity | None] = {}  # one per caller, not per event
    for audit_id, (event, where) in latest.items():
        recorded, why = _recorded(audit_id, event, where, identities)
        if recorded is None:
            skipped[why] += 1
        else:
            requests.append(recorded)
    return requests, skipped


def _time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _recorded(audit_id: str, event: dict[str, Any], where: str,
              identities: dict[tuple[str, tuple[str, ...]], Identity | None]) -> tuple[Recorded | None, str]:
    annotations = {str(k): str(v) for k, v in (event.get("annotations") or {}).items()}
    if "authorization.k8s.io/decision" not in annotations:
        return None, "requests the policy never judged (refused before authorization, or kubegate's own API)"
    user = event.get("user") or {}
    at = _time(event.get("requestReceivedTimestamp") or event.get("stageTimestamp"))
    cluster = annotations.get("kubegate.io/cluster", "")
    if not isinstance(user, dict) or not user.get("username") or at is None or not cluster:
        return None, "events without a user, a time or a cluster"
    uri = str(event.get("requestURI", ""))
    path, _, query = uri.partition("?")
    verb = str(event.get("verb", ""))
    ref = event.get("objectRef")
    if isinstance(ref, dict) and ref.get("resource"):
        info = RequestInfo(path=path, verb=verb, is_resource=True, api_group=str(ref.get("apiGroup", "")),
                           api_version=str(ref.get("apiVersion", "")), namespace=str(ref.get("namespace", "")),
                           resource=str(ref["resource"]), subresource=str(ref.get("subresource", "")),
                           name=str(ref.get("name", "")))
    else:
        prefix = f"{CLUSTER_PREFIX}{cluster}"
        if path == prefix or path.startswith(prefix + "/"):
            path = path[len(prefix):] or "/"
        info = RequestInfo(path=path, verb=verb, is_resource=False)
    body = event.get("requestObject")
    if "kubegate.io/request-object" in annotations:  # truncated or otherwise not the whole object
        body = None
    groups = tuple(str(g) for g in user.get("groups") or [])
    key = (str(user["username"]), groups)
    if key not in identities:
        try:
            identities[key] = Identity(*key)
        except ValueError:
            identities[key] = None
    return Recorded(audit_id, at, key[0], groups, cluster, info, query, body, annotations, where, identities[key]), ""


# -- what a rule needs that an event may not carry ---------------------------------------------

def missing_input(rule: Rule, request: Recorded) -> str:
    """Why `rule` cannot be replayed for this request ("" when it can)."""
    if rule.object_labels:
        return "the live object's labels are not in audit events"
    if rule.consequence is not None:
        return "a blast radius is read from the cluster at the time; audit events carry its summary only"
    if rule.no_selector and _has_selector(request.query):
        return "how many objects the selector selects is not in audit events"
    if rule.body:
        if request.body is None:
            return "the request body was not recorded (audit level Metadata)"
        if request.info.verb == "patch":
            return "a patch is judged by the object it leaves, and the live object is not in audit events"
    return ""


def _has_selector(query: str) -> bool:
    try:
        parsed = Query.parse(query)
    except Denial:
        return False
    return any(parsed.selector(k) for k in SELECTORS)


class _NoCluster(UpstreamClient):
    """Replay asks no cluster: rules that would are left out beforehand (`missing_input`)."""

    async def get_object(self, upstream: Upstream, identity: Identity, path: str, request_id: str) -> Any:
        raise UpstreamError(503, "replay reads no cluster")

    async def pages(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> AsyncIterator[list[Any]]:
        raise UpstreamError(503, "replay reads no cluster")
        yield []  # pragma: no cover - makes this an async generator

    async def count(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> int:
        raise UpstreamError(503, "replay reads no cluster")


# -- one policy set, judging requests in order ---------------------------------------------------

@dataclass
class Judge:
    """A policy set (authz and the change gates) judging recorded requests as the gateway would."""

    authz: PolicySet
    change: ChangePolicy
    name: str = ""
    _authorizer: Authorizer = field(init=False)
    _store: MemoryStore = field(init=False, default_factory=MemoryStore)
    _client: _NoCluster = field(init=False, default_factory=_NoCluster)

    def __post_init__(self) -> None:
        self._authorizer = Authorizer(self.authz)
        # The gateway's own gates, built once; each request sets the policy (without the rules it
        # cannot replay) and the time they read.
        self._policy, self._now = self.change, 0.0
        self._freeze = FreezeGate(lambda: self._policy, lambda: self._now)
        self._rules = RulesGate(lambda: self._policy, self._store, self._client, clock=lambda: self._now)

    def unreplayable(self, request: Recorded) -> dict[str, str]:
        """The rules of this set that match the request but cannot be replayed: id → why."""
        out = {}
        for rule in self.change.rules:
            if rule.match.matches(request.cluster, request.info):
                why = missing_input(rule, request)
                if why:
                    out[rule.id] = why
        return out

    async def judge(self, request: Recorded, leave_out: frozenset[str]) -> Verdict:
        identity = request.identity
        if identity is None:
            return Verdict("deny", "authz none")
        decision = self._authorizer.decide(identity, request.cluster, request.info)
        if not decision.allowed:
            return Verdict("deny", f"authz {decision.rule.id if decision.rule else 'none'}")
        if not request.info.is_resource or reviews.is_review(request.info):
            return Verdict("allow", "")  # the gates judge resources; kubectl auth can-i is answered before them
        self._policy = self.change if not leave_out else dataclasses.replace(
            self.change, rules=tuple(r for r in self.change.rules if r.id not in leave_out))
        self._now = request.at
        ctx = _context(request, identity)
        try:
            await self._freeze(ctx)
            await self._rules(ctx)
        except Denial:
            fired = [k.removeprefix("kubegate.io/rule.") for k, v in ctx.annotations.items()
                     if k.startswith("kubegate.io/rule.") and v == "deny"]
            return Verdict("deny", f"rule {fired[-1]}" if fired else "rule ?")
        return _gates_verdict(ctx.annotations)


def _context(request: Recorded, identity: Identity) -> GateContext:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
    if command := request.annotations.get("kubegate.io/kubectl-command"):
        headers["Kubectl-Command"] = command
    body = json.dumps(request.body).encode() if request.body is not None else b""
    ctx = GateContext(RequestView("POST", request.info.path, request.query, headers, body, "127.0.0.1"),
                      request_id=request.audit_id)
    ctx.identity, ctx.info = identity, request.info
    try:
        ctx.query = Query.parse(request.query)
    except Denial:
        ctx.query = Query()
    ctx.path = request.info.path
    ctx.upstream = Upstream(request.cluster, "127.0.0.1", 443, "", "", Path("/dev/null"))
    return ctx


def _gates_verdict(annotations: dict[str, str], leave_out: frozenset[str] = frozenset()) -> Verdict:
    """The change gates' verdict from the annotations they wrote (or the gateway recorded)."""
    fired = {k.removeprefix("kubegate.io/rule."): v for k, v in annotations.items()
             if k.startswith("kubegate.io/rule.") and k.removeprefix("kubegate.io/rule.") not in leave_out}
    denied = [rid for rid, outcome in fired.items() if outcome == "deny"]
    if denied:
        return Verdict("deny", f"rule {denied[0]}")
    approvals = [rid for rid, outcome in fired.items() if outcome == "require-approval"]
    if "kubegate.io/freeze" in annotations:
        return Verdict("approval", f"freeze {annotations['kubegate.io/freeze']}")
    if approvals:
        return Verdict("approval", f"rule {approvals[0]}")
    return Verdict("allow", "")


def recorded_verdict(request: Recorded, leave_out: frozenset[str]) -> Verdict:
    """What the gateway decided, as far as authorization, freeze windows and rules go."""
    a = request.annotations
    if a.get("authorization.k8s.io/decision") != "allow":
        return Verdict("deny", f"authz {a.get('kubegate.io/authz-rule', 'none')}")
    return _gates_verdict(a, leave_out)


# -- the comparison -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Flip:
    request: Recorded
    old: Verdict
    new: Verdict

    @property
    def rule(self) -> str:
        """The rule the flip is owed to: the new set's when it is stricter, else the old set's."""
        stricter = OUTCOMES.index(self.new.outcome) > OUTCOMES.index(self.old.outcome)
        return (self.new.by if stricter else self.old.by) or "(no rule)"

    @property
    def change(self) -> str:
        return f"{self.old.outcome} -> {self.new.outcome}"


@dataclass
class Report:
    requests: int = 0
    flips: list[Flip] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    unreplayable: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule id, why) → requests
    baseline: str = "recorded"
    revisions: Counter[str] = field(default_factory=Counter)  # the policy revisions the events name

    def groups(self) -> list[tuple[str, str, list[Flip]]]:
        """(rule, change, flips), largest group first."""
        by: dict[tuple[str, str], list[Flip]] = {}
        for f in self.flips:
            by.setdefault((f.rule, f.change), []).append(f)
        return sorted(((r, c, fs) for (r, c), fs in by.items()), key=lambda g: (-len(g[2]), g[0], g[1]))


async def _replay(requests: list[Recorded], new: Judge, old: Judge | None, report: Report) -> None:
    for request in requests:
        # A rule left out of one side is left out of both: the two sets differ only by their policy.
        unreplayable = {**(old.unreplayable(request) if old else {}), **new.unreplayable(request)}
        leave_out = frozenset(unreplayable)
        for rule_id, why in unreplayable.items():
            report.unreplayable[(rule_id, why)] += 1
        after = await new.judge(request, leave_out)
        before = await old.judge(request, leave_out) if old else recorded_verdict(request, leave_out)
        report.requests += 1
        if before.outcome != after.outcome:
            report.flips.append(Flip(request, before, after))


def replay(paths: list[Path], new: Judge, old: Judge | None = None) -> Report:
    requests, skipped = read(paths)
    report = Report(skipped=skipped, baseline=old.name if old else "recorded")
    report.revisions.update(r.annotations.get("kubegate.io/policy-revision", "?") for r in requests)
    asyncio.run(_replay(requests, new, old, report))
    return report


def events_of(flips: Iterable[Flip]) -> Iterator[dict[str, Any]]:
    for f in flips:
        r = f.request
        yield {"auditID": r.audit_id, "event": r.where, "time": datetime.fromtimestamp(r.at).astimezone().isoformat(),
               "user": r.user, "cluster": r.cluster, "verb": r.info.verb,
               "resource": r.info.object_ref if r.info.is_resource else r.info.path,
               "namespace": r.info.namespace, "name": r.info.name,
               "old": {"outcome": f.old.outcome, "by": f.old.by}, "new": {"outcome": f.new.outcome, "by": f.new.by}}
