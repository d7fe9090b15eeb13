"""The change-gate policy: freeze windows (freeze.yaml), the change-risk rule library
(rules.yaml) and risk webhooks (webhooks.yaml), each read with file:line problems.

Every item selects requests with the same `match` block:

    match:
      clusters: ["*"]            # globs
      namespaces: ["prod-*"]     # globs; a cluster-scoped request has namespace ""
      resources: ["deployments.apps", "deployments.apps/scale", "*"]
      verbs: [delete]            # default: every mutating verb
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config import yamlsrc
from ..consequences.checks import CHECKS, WITH_THRESHOLD, Consequence
from .cron import Cron, CronError
from ..authz.policy import BUILTIN_GROUPS, BUILTIN_RESOURCES, RESOURCE_VERBS, VERB_GROUPS
from ..request import bodies
from ..request.info import MUTATING, RequestInfo

Outcome = Literal["deny", "require-approval", "annotate"]
OUTCOMES = ("deny", "require-approval", "annotate")
SEVERITIES = ("low", "medium", "high", "critical")
BODY_OPS = ("equals", "not_equals", "in", "exists")


@dataclass(frozen=True)
class Match:
    clusters: tuple[str, ...] = ("*",)
    namespaces: tuple[str, ...] = ("*",)
    resources: tuple[str, ...] = ("*",)
    verbs: frozenset[str] = MUTATING

    def matches(self, cluster: str, info: RequestInfo) -> bool:
        # An eviction is matched as itself and as the delete of its pod it is.
        return self._matches(cluster, info) or (info.acts is not info and self._matches(cluster, info.acts))

    def _matches(self, cluster: str, info: RequestInfo) -> bool:
        # A proxied request (pods/, services/, nodes/proxy) can change anything behind it, whatever
        # its method: it counts as a mutation for every window and rule that covers mutations.
        proxied = info.subresource == "proxy" and self.verbs >= PROXY_AS
        if not info.is_resource or (info.verb not in self.verbs and not proxied):
            return False
        if not any(fnmatch.fnmatchcase(cluster, c) for c in self.clusters):
            return False
        if not any(fnmatch.fnmatchcase(info.namespace, n) for n in self.namespaces):
            return False
        full = info.object_ref
        return any(r == "*" or r == full or (r.endswith("/*") and full.startswith(r[:-1])) for r in self.resources)


# A proxied request counts as a mutation for a window or rule that covers at least these verbs
# (the default "every mutating verb" does); rules about one verb (deletecollection) stay about it.
PROXY_AS = frozenset({"create", "update", "patch", "delete"})


@dataclass(frozen=True)
class FreezeWindow:
    name: str
    description: str
    zone: ZoneInfo
    match: Match
    exempt_groups: tuple[str, ...]
    start: datetime | None = None  # calendar range
    end: datetime | None = None
    cron: Cron | None = None  # or a recurring start
    duration: timedelta = timedelta(0)
    source: str = ""

    def active(self, now: float) -> tuple[datetime, datetime] | None:
        """(start, end) in the window's zone if `now` lies inside it."""
        t = datetime.fromtimestamp(now, self.zone)
        if self.cron is None:
            assert self.start is not None and self.end is not None
            return (self.start, self.end) if self.start.timestamp() <= now < self.end.timestamp() else None
        started = self.cron.last_start(t, self.duration)
        if started is None:
            return None
        # A recurring window lasts its duration of elapsed time (through a daylight-saving change
        # it ends an hour earlier or later by the wall clock).
        ends = started.timestamp() + self.duration.total_seconds()
        return (started, datetime.fromtimestamp(ends, self.zone)) if now < ends else None

    def upcoming(self, now: float) -> tuple[datetime, datetime] | None:
        t = datetime.fromtimestamp(now, self.zone)
        if self.cron is None:
            assert self.start is not None and self.end is not None
            return (self.start, self.end) if t < self.start else None
        nxt = self.cron.next_start(t)
        return (nxt, datetime.fromtimestamp(nxt.timestamp() + self.duration.total_seconds(), self.zone)) \
            if nxt is not None else None


@dataclass(frozen=True)
class BodyCondition:
    path: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    severity: str
    outcome: Outcome
    match: Match
    exempt_groups: tuple[str, ...] = ()
    no_selector: bool = False
    body: tuple[BodyCondition, ...] = ()
    object_labels: tuple[tuple[str, str], ...] = ()
    kubectl_command: str = ""
    more_than: tuple[int, float] | None = None  # (count, seconds): fires past `count` matches per window
    webshell_session: bool = False  # only requests made with a session token (every webshell terminal's)
    consequence: Consequence | None = None  # an availability check on the change's blast radius
    groups: tuple[str, ...] = ()  # only for members of these groups (automation, AI agents)
    example: str = ""
    source: str = ""

    @property
    def needs_body(self) -> bool:
        return bool(self.body)


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    match: Match
    ca_file: str = ""
    timeout_seconds: float = 2.0
    failure_policy: str = ""  # "Fail", "Ignore", or "" = Fail for every change, Ignore for reads
    cache_seconds: float = 0.0
    max_review_bytes: int = 1024 * 1024  # a larger review is not sent: the request is refused (413)
    source: str = ""

    def fails_closed(self, info: RequestInfo) -> bool:
        # A checker that errors or times out must not be a way through: by default every change
        # (and a proxied request, which can change anything) waits for its answer.
        if self.failure_policy:
            return self.failure_policy == "Fail"
        return info.mutating or info.subresource == "proxy"


@dataclass(frozen=True)
class ChangePolicy:
    freeze: tuple[FreezeWindow, ...] = ()
    rules: tuple[Rule, ...] = ()
    webhooks: tuple[Webhook, ...] = ()


class _Reader(yamlsrc.Reader):
    def strings(self, node: dict[str, Any], key: str, what: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = node.get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
            self.problem(node, f"{what}.{key} must be a non-empty list of strings")
            return default
        return tuple(value)

    def match(self, node: Any, what: str) -> Match:
        if node is None:
            return Match()
        if not self.keys(node, {"clusters", "namespaces", "resources", "verbs"}, f"{what}.match"):
            return Match()
        resources = self.strings(node, "resources", f"{what}.match", ("*",))
        for r in resources:
            base = r.split("/", 1)[0]
            group = base.split(".", 1)[1] if "." in base else ""
            if r != "*" and group in BUILTIN_GROUPS and base not in BUILTIN_RESOURCES:
                self.problem(node, f"{what}.match: unknown resource {r!r}")
        verbs: set[str] = set()
        for v in self.strings(node, "verbs", f"{what}.match", tuple(sorted(MUTATING))):
            expanded = VERB_GROUPS.get(v, (v,))
            if v != "*" and any(x not in RESOURCE_VERBS for x in expanded):
                self.problem(node, f"{what}.match: unknown verb {v!r}")
            verbs.update(RESOURCE_VERBS if v == "*" else expanded)
        return Match(self.strings(node, "clusters", f"{what}.match", ("*",)),
                     self.strings(node, "namespaces", f"{what}.match", ("*",)), resources, frozenset(verbs))

    def ca_file(self, node: dict[str, Any], what: str, directory: Path) -> str:
        """A `ca_file` (relative to the policy directory) as a path, "" for the system CAs."""
        ca_file = str(node.get("ca_file", ""))
        if ca_file and not (directory / ca_file).is_file():
            self.problem(node, f"{what}.ca_file: {directory / ca_file} does not exist")
        return str(directory / ca_file) if ca_file else ""

    def timeout(self, node: dict[str, Any], what: str, most: float, default: float = 2.0) -> float:
        """A `timeout` duration above 0 and at most MOST seconds."""
        found = yamlsrc.duration(node.get("timeout", f"{default:g}s"))
        if not found or found > most:
            self.problem(node, f"{what}.timeout must be a duration between 0 and {most:g}s")
            return default
        return found

    def duplicates(self, items: list[Any], attr: str, kind: str) -> None:
        seen: dict[str, str] = {}
        for item in items:
            name = getattr(item, attr)
            if name in seen:
                self.problems.append(f"{item.source}: {kind} {name} is also defined at {seen[name]}")
            seen[name] = item.source


def _top(r: _Reader, key: str) -> list[Any]:
    data, error = yamlsrc.load(r.path)
    if error:
        r.problems.append(error)
        return []
    if data is None:
        return []
    if not r.keys(data, {key}, r.path.name):
        return []
    items = data.get(key) or []
    if not isinstance(items, list):
        r.problem(data, f"{key} must be a list")
        return []
    return items


def _freeze(r: _Reader, node: Any, i: int) -> FreezeWindow | None:
    what = f"windows[{i}]"
    if not r.keys(node, {"name", "description", "timezone", "from", "to", "cron", "duration", "match",
                         "exempt_groups"}, what):
        return None
    name = r.ident(node, "name", what, f"window-{i}")
    what = f"window {name}"
    try:
        zone = ZoneInfo(str(node.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        r.problem(node, f"{what}.timezone: unknown time zone {node.get('timezone')!r} (e.g. Europe/Berlin, UTC)")
        zone = ZoneInfo("UTC")
    common = dict(name=name, description=str(node.get("description", "")), zone=zone,
                  match=r.match(node.get("match"), what),
                  exempt_groups=r.strings(node, "exempt_groups", what, ()), source=yamlsrc.where(r.path, node))
    if "cron" in node:
        if "from" in node or "to" in node:
            r.problem(node, f"{what}: give either cron + duration or from + to, not both")
        try:
            cron = Cron.parse(str(node["cron"]))
        except CronError as e:
            r.problem(node, f"{what}.cron: {e}")
            return None
        seconds = yamlsrc.duration(node.get("duration"))
        if not seconds:
            r.problem(node, f"{what}.duration is required with cron: how long each freeze lasts, e.g. 62h")
            return None
        return FreezeWindow(cron=cron, duration=timedelta(seconds=seconds), **common)  # type: ignore[arg-type]
    bounds = []
    for key in ("from", "to"):
        value = node.get(key)
        try:
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        except ValueError:
            r.problem(node, f"{what}.{key}: {value!r} is not a date and time such as 2026-11-26T00:00")
            return None
        bounds.append(parsed if parsed.tzinfo else parsed.replace(tzinfo=zone))
    if bounds[1] <= bounds[0]:
        r.problem(node, f"{what}: ends ({bounds[1].isoformat()}) before it starts ({bounds[0].isoformat()})")
        return None
    return FreezeWindow(start=bounds[0], end=bounds[1], **common)  # type: ignore[arg-type]


def _rule(r: _Reader, node: Any, i: int) -> Rule | None:
    what = f"rules[{i}]"
    if not r.keys(node, {"id", "description", "severity", "outcome", "match", "when", "exempt_groups",
                         "example"}, what):
        return None
    rule_id = r.ident(node, "id", what, f"rule-{i}")
    what = f"rule {rule_id}"
    severity = node.get("severity", "medium")
    if severity not in SEVERITIES:
        r.problem(node, f"{what}.severity must be one of {', '.join(SEVERITIES)}")
    outcome = node.get("outcome")
    if outcome not in OUTCOMES:
        r.problem(node, f"{what}.outcome must be one of {', '.join(OUTCOMES)}")
        outcome = "deny"
    when = node.get("when") or {}
    extra: dict[str, Any] = {}
    if r.keys(when, {"no_selector", "body", "object_labels", "kubectl_command", "more_than", "webshell_session",
                     "consequence", "groups"}, f"{what}.when"):
        if "groups" in when:
            extra["groups"] = r.strings(when, "groups", f"{what}.when", ())
        if "consequence" in when:
            extra["consequence"] = _consequence(r, when, what)
        extra["no_selector"] = bool(when.get("no_selector", False))
        extra["webshell_session"] = bool(when.get("webshell_session", False))
        conditions = []
        for c in when.get("body") or []:
            if not r.keys(c, {"path", *BODY_OPS}, f"{what}.when.body"):
                continue
            ops = [op for op in BODY_OPS if op in c]
            if not isinstance(c.get("path"), str) or len(ops) != 1:
                r.problem(c, f"{what}.when.body: each condition needs a path and one of {', '.join(BODY_OPS)}")
                continue
            if ops[0] == "in" and not isinstance(c["in"], list):
                r.problem(c, f"{what}.when.body: `in` takes a list")
                continue
            if why := bodies.path_problem(c["path"]):
                r.problem(c, f"{what}.when.body: path {c['path']!r}: {why}")
                continue
            conditions.append(BodyCondition(c["path"], ops[0], c[ops[0]]))
        extra["body"] = tuple(conditions)
        labels = when.get("object_labels") or {}
        if not isinstance(labels, dict):
            r.problem(when, f"{what}.when.object_labels must map label keys to values")
            labels = {}
        extra["object_labels"] = tuple((str(k), str(v)) for k, v in labels.items())
        extra["kubectl_command"] = str(when.get("kubectl_command", ""))
        more = when.get("more_than")
        if more is not None:
            count = more.get("count") if isinstance(more, dict) else None
            per = yamlsrc.duration(more.get("per")) if isinstance(more, dict) else None
            if not isinstance(count, int) or isinstance(count, bool) or count < 0 or not per:
                r.problem(when, f"{what}.when.more_than needs count (>= 0) and per (a period such as 1h)")
            else:
                extra["more_than"] = (count, per)
    return Rule(rule_id, str(node.get("description", "")), str(severity), outcome, r.match(node.get("match"), what),
                r.strings(node, "exempt_groups", what, ()), example=str(node.get("example", "")),
                source=yamlsrc.where(r.path, node), **extra)


def _consequence(r: _Reader, when: dict[str, Any], what: str) -> Consequence | None:
    """`consequence: CHECK` or `consequence: {check: CHECK, above: N, per: cluster|zone}`."""
    node = when["consequence"]
    spec = {"check": node} if isinstance(node, str) else node
    if not isinstance(spec, dict) or not r.keys(spec, {"check", "above", "per"}, f"{what}.when.consequence"):
        r.problem(when, f"{what}.when.consequence must be a check name or a mapping with check (and above, per)")
        return None
    check = spec.get("check")
    if check not in CHECKS:
        r.problem(when, f"{what}.when.consequence: unknown check {check!r}; the checks are {', '.join(sorted(CHECKS))}")
        return None
    above = spec.get("above", 0)
    if isinstance(above, bool) or not isinstance(above, int) or above < 0:
        r.problem(when, f"{what}.when.consequence.above must be a whole number (0 or more)")
        return None
    if "above" in spec and check not in WITH_THRESHOLD:
        r.problem(when, f"{what}.when.consequence: {check} takes no `above` (only {', '.join(sorted(WITH_THRESHOLD))})")
    per = spec.get("per", "cluster")
    if per not in ("cluster", "zone") or ("per" in spec and check != "unschedulable-nodes"):
        r.problem(when, f"{what}.when.consequence.per is cluster or zone, for unschedulable-nodes only")
        return None
    return Consequence(str(check), above, str(per))


def _webhook(r: _Reader, node: Any, i: int, directory: Path) -> Webhook | None:
    what = f"webhooks[{i}]"
    if not r.keys(node, {"name", "url", "ca_file", "timeout", "failure_policy", "match", "cache", "max_review_bytes"},
                  what):
        return None
    name = r.ident(node, "name", what, f"webhook-{i}")
    what = f"webhook {name}"
    url = node.get("url")
    parts = urlsplit(str(url or ""))
    if parts.scheme != "https" or not parts.hostname:
        r.problem(node, f"{what}.url must be an https:// URL (reviews carry who changes what)")
    ca_file = r.ca_file(node, what, directory)
    timeout = r.timeout(node, what, 30)
    policy = node.get("failure_policy", "")
    if policy not in ("", "Fail", "Ignore"):
        r.problem(node, f"{what}.failure_policy must be Fail or Ignore")
    cache = yamlsrc.duration(node.get("cache", 0))
    if cache is None:
        r.problem(node, f"{what}.cache must be a duration (0: no cache)")
    max_review = node.get("max_review_bytes", 1024 * 1024)
    if isinstance(max_review, bool) or not isinstance(max_review, int) or not 1024 <= max_review <= 64 * 1024 * 1024:
        r.problem(node, f"{what}.max_review_bytes must be a whole number of bytes from 1024 to 67108864")
        max_review = 1024 * 1024
    return Webhook(name, str(url), r.match(node.get("match"), what), ca_file, timeout, str(policy), cache or 0.0,
                   max_review, yamlsrc.where(r.path, node))


def load(directory: Path) -> tuple[ChangePolicy, list[str]]:
    problems: list[str] = []
    freeze: list[FreezeWindow] = []
    rules: list[Rule] = []
    webhooks: list[Webhook] = []
    if (directory / "freeze.yaml").exists():
        r = _Reader(directory / "freeze.yaml")
        freeze = [w for i, n in enumerate(_top(r, "windows")) if (w := _freeze(r, n, i))]
        r.duplicates(freeze, "name", "window")
        problems += r.problems
    if (directory / "rules.yaml").exists():
        r = _Reader(directory / "rules.yaml")
        rules = [x for i, n in enumerate(_top(r, "rules")) if (x := _rule(r, n, i))]
        r.duplicates(rules, "id", "rule")
        problems += r.problems
    if (directory / "webhooks.yaml").exists():
        r = _Reader(directory / "webhooks.yaml")
        webhooks = [h for i, n in enumerate(_top(r, "webhooks")) if (h := _webhook(r, n, i, directory))]
        r.duplicates(webhooks, "name", "webhook")
        problems += r.problems
    return ChangePolicy(tuple(freeze), tuple(rules), tuple(webhooks)), problems

