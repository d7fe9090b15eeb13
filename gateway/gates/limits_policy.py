"""The rate-gate policy (limits.yaml): delete budgets with breakers, QPS limits, store failure.

    budgets:                       # how many objects may be deleted, in several windows at once
      - name: pod-deletes
        resources: [pods]          # resource[.group]; "*" = every kind no other budget names
        per: [cluster]             # any of cluster, namespace, user; [] = one budget for everything
        windows: {1m: 50, 5m: 200, 1h: 1000, 24h: 5000}
        breaker: {cooldown: manual}  # or a duration: closes by itself after it
    qps:                           # token buckets on request rates
      - name: kubectl-pod-lists
        user_agent: "kubectl/*"    # a glob; client-set, so it only ever adds a limit
        resources: [pods]
        verbs: [list]
        per: [user]
        qps: 5
        burst: 10
    on_store_failure: {mutating: deny, read: allow}
    kubegate_api: {qps: 5, burst: 20}   # per user, on /kubegate/v1/... (default as shown)

A resource is named by at most one budget (plus the "*" budget for all others), so a delete is
charged to exactly one budget and its breaker. Every QPS limit that matches a request applies.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import yamlsrc
from ..identity.identity import Identity
from ..authz.policy import BUILTIN_GROUPS, BUILTIN_RESOURCES, RESOURCE_VERBS, VERB_GROUPS
from ..request.info import RequestInfo

FILE = "limits.yaml"
SCOPE_KEYS = ("cluster", "namespace", "user")
_RESOURCE = re.compile(r"^([a-z0-9-]+)(\.[a-z0-9.-]+)?$")


def scope_key(name: str, per: tuple[str, ...], cluster: str, info: RequestInfo, identity: Identity) -> str:
    """`name/cluster=…/namespace=…/user=…` with the keys in `per` (canonical order: user last)."""
    values = {"cluster": cluster, "namespace": info.namespace or "-", "user": identity.user}
    return "/".join([name] + [f"{k}={values[k]}" for k in per])


@dataclass(frozen=True)
class Window:
    seconds: float
    limit: int
    label: str  # the period as the policy writes it: "1m", "24h"


@dataclass(frozen=True)
class Budget:
    name: str
    resources: tuple[str, ...]
    per: tuple[str, ...]
    windows: tuple[Window, ...]  # shortest first
    cooldown_seconds: float  # 0: the breaker stays open until reset
    source: str = ""
    groups: tuple[str, ...] = ()  # only for members of these groups (and then instead of the general ones)

    def scope(self, cluster: str, info: RequestInfo, identity: Identity) -> str:
        """The budget instance a request is charged to, e.g. `pod-deletes/cluster=hz-1`."""
        return scope_key(self.name, self.per, cluster, info, identity)

    def describe(self) -> str:
        windows = ", ".join(f"{w.limit}/{w.label}" for w in self.windows)
        per = " per " + ", ".join(self.per) if self.per else ""
        return f"{windows}{per}"


@dataclass(frozen=True)
class QpsLimit:
    name: str
    user_agent: str
    resources: tuple[str, ...]
    verbs: frozenset[str]  # empty: every verb
    per: tuple[str, ...]
    qps: float
    burst: int
    source: str = ""
    groups: tuple[str, ...] = ()  # only for members of these groups (empty: everyone)

    def matches(self, info: RequestInfo, user_agent: str, groups: tuple[str, ...] = ()) -> bool:
        if self.groups and not any(g in self.groups for g in groups):
            return False
        if not fnmatch.fnmatchcase(user_agent, self.user_agent):
            return False
        if self.verbs and info.verb not in self.verbs:
            return False
        return "*" in self.resources or (info.is_resource and info.group_resource in self.resources)

    def scope(self, cluster: str, info: RequestInfo, identity: Identity) -> str:
        return scope_key(self.name, self.per, cluster, info, identity)


Outcome = Literal["deny", "allow"]


@dataclass(frozen=True)
class StoreFailure:
    mutating: Outcome = "deny"
    read: Outcome = "allow"


@dataclass(frozen=True)
class ApiLimit:
    """Per-user QPS on kubegate's own API (/kubegate/v1/...: access requests, approvals, breakers)."""

    qps: float = 5.0
    burst: int = 20


@dataclass(frozen=True)
class LimitsPolicy:
    budgets: tuple[Budget, ...] = ()
    qps: tuple[QpsLimit, ...] = ()
    on_store_failure: StoreFailure = field(default_factory=StoreFailure)
    kubegate_api: ApiLimit = field(default_factory=ApiLimit)

    def budget_for(self, resource: str, groups: tuple[str, ...] = ()) -> Budget | None:
        """The budget a delete of RESOURCE is charged to: a budget of one of the caller's GROUPS
        first (naming the resource, then `*`), else the general ones (naming it, then `*`)."""
        mine = [b for b in self.budgets if b.groups and any(g in b.groups for g in groups)]
        general = [b for b in self.budgets if not b.groups]
        for candidates in (mine, general):
            found = next((b for b in candidates if resource in b.resources), None) \
                or next((b for b in candidates if "*" in b.resources), None)
            if found is not None:
                return found
        return None


class _Reader(yamlsrc.Reader):
    def names(self, node: Any, key: str, what: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = node.get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(node, f"{what}.{key} must be a list of strings")
            return default or ()
        return tuple(value)

    def resources(self, node: Any, what: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        out = self.names(node, "resources", what, default)
        if not out:
            self.problem(node, f"{what}.resources must name at least one resource")
        for r in out:
            m = _RESOURCE.match(r)
            if r == "*":
                continue
            if not m:
                self.problem(node, f"{what}: {r!r} is not resource[.group]")
            elif (m.group(2) or ".")[1:] in BUILTIN_GROUPS and r not in BUILTIN_RESOURCES:
                self.problem(node, f"{what}: unknown resource {r!r} (a built-in group has no such resource)")
        return out

    def per(self, node: Any, what: str, default: tuple[str, ...]) -> tuple[str, ...]:
        out = self.names(node, "per", what, default)
        for key in out:
            if key not in SCOPE_KEYS:
                self.problem(node, f"{what}.per: {key!r} is not one of {', '.join(SCOPE_KEYS)}")
        if len(set(out)) != len(out):
            self.problem(node, f"{what}.per names a key twice")
        return tuple(k for k in SCOPE_KEYS if k in out)  # canonical order: stable budget keys


def _budget(r: _Reader, node: Any, i: int) -> Budget | None:
    what = f"budgets[{i}]"
    if not r.keys(node, {"name", "description", "resources", "per", "windows", "breaker", "groups"}, what):
        return None
    name = r.ident(node, "name", what, f"budget-{i}")
    what = f"budget {name}"
    resources = r.resources(node, what)
    per = r.per(node, what, ("cluster",))
    windows: list[Window] = []
    raw = node.get("windows")
    if not isinstance(raw, dict) or not raw:
        r.problem(node, f"{what}.windows must map periods to limits, e.g. {{1m: 50, 1h: 1000}}")
    else:
        for period, limit in raw.items():
            seconds = yamlsrc.duration(period)
            if not seconds:
                r.problem(node, f"{what}.windows: {period!r} is not a period such as 1m, 5m, 1h, 24h")
            elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                r.problem(node, f"{what}.windows: {period}: the limit must be a whole number >= 1")
            elif any(w.seconds == seconds for w in windows):
                r.problem(node, f"{what}.windows: {period} is given twice")
            else:
                windows.append(Window(seconds, limit, str(period).strip()))
    windows.sort(key=lambda w: w.seconds)
    for shorter, longer in zip(windows, windows[1:]):
        # A longer window that allows no more than a shorter one always stops first: the shorter is dead.
        if longer.limit <= shorter.limit:
            r.problem(node, f"{what}.windows: {longer.label} allows {longer.limit}, no more than "
                            f"{shorter.label} ({shorter.limit}), so the {shorter.label} window can never stop a "
                            "delete: unreachable")
    cooldown = 0.0
    breaker = node.get("breaker", {"cooldown": "manual"})
    if r.keys(breaker, {"cooldown"}, f"{what}.breaker"):
        value = breaker.get("cooldown", "manual")
        if value != "manual":
            seconds = yamlsrc.duration(value)
            if not seconds:
                r.problem(breaker, f"{what}.breaker.cooldown: {value!r} is neither \"manual\" nor a duration > 0")
            else:
                cooldown = seconds
    return Budget(name, resources, per, tuple(windows), cooldown, yamlsrc.where(r.path, node),
                  groups=r.names(node, "groups", what, ()))


def _qps(r: _Reader, node: Any, i: int) -> QpsLimit | None:
    what = f"qps[{i}]"
    if not r.keys(node, {"name", "description", "user_agent", "resources", "verbs", "per", "qps", "burst", "groups"},
                  what):
        return None
    name = r.ident(node, "name", what, f"qps-{i}")
    what = f"qps limit {name}"
    user_agent = node.get("user_agent", "*")
    if not isinstance(user_agent, str) or not user_agent:
        r.problem(node, f"{what}.user_agent must be a glob such as 'kubectl/*'")
        user_agent = "*"
    resources = r.resources(node, what, ("*",))
    verbs: set[str] = set()
    for v in r.names(node, "verbs", what, ("*",)):
        if v == "*":
            continue
        expanded = VERB_GROUPS.get(v, (v,))
        unknown = [x for x in expanded if x not in RESOURCE_VERBS]
        if unknown:
            r.problem(node, f"{what}.verbs: unknown verb {v!r}")
        verbs.update(expanded)
    per = r.per(node, what, ("user",))
    qps = node.get("qps")
    if isinstance(qps, bool) or not isinstance(qps, (int, float)) or qps <= 0:
        r.problem(node, f"{what}.qps must be a number > 0")
        qps = 1.0
    burst = node.get("burst", max(1, math.ceil(qps)))
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        r.problem(node, f"{what}.burst must be a whole number >= 1")
        burst = 1
    return QpsLimit(name, user_agent, resources, frozenset(verbs), per, float(qps), burst,
                    yamlsrc.where(r.path, node), groups=r.names(node, "groups", what, ()))


def load(directory: Path) -> tuple[LimitsPolicy, list[str]]:
    """The policy in DIR/limits.yaml (empty if there is none) and every problem found in it."""
    path = directory / FILE
    if not path.exists():
        return LimitsPolicy(), []
    data, error = yamlsrc.load(path)
    if error:
        return LimitsPolicy(), [error]
    r = _Reader(path)
    if data is None:
        return LimitsPolicy(), []
    if not r.keys(data, {"budgets", "qps", "on_store_failure", "kubegate_api"}, FILE):
        return LimitsPolicy(), r.problems
    budgets = [b for i, n in enumerate(data.get("budgets") or []) if (b := _budget(r, n, i))]
    limits = [q for i, n in enumerate(data.get("qps") or []) if (q := _qps(r, n, i))]
    for kind, items in (("budget", budgets), ("qps limit", limits)):
        seen: dict[str, str] = {}
        for item in items:
            if item.name in seen:
                r.problems.append(f"{item.source}: {kind} {item.name} is also defined at {seen[item.name]}")
            seen[item.name] = item.source
    owner: dict[tuple[tuple[str, ...], str], Budget] = {}  # (groups, resource): one budget each
    for b in budgets:
        for res in b.resources:
            slot = (b.groups, res)
            if slot in owner:
                r.problems.append(f"{b.source}: budget {b.name}: {res} is already charged to budget "
                                  f"{owner[slot].name} ({owner[slot].source}); a delete is charged to one budget")
            owner[slot] = b
    failure = StoreFailure()
    raw = data.get("on_store_failure")
    if raw is not None and r.keys(raw, {"mutating", "read"}, "on_store_failure"):
        values = {}
        for key in ("mutating", "read"):
            value = raw.get(key, getattr(failure, key))
            if value not in ("deny", "allow"):
                r.problem(raw, f"on_store_failure.{key} must be deny or allow, got {value!r}")
            else:
                values[key] = value
        failure = StoreFailure(**values)
    api = ApiLimit()
    raw_api = data.get("kubegate_api")
    if raw_api is not None and r.keys(raw_api, {"qps", "burst"}, "kubegate_api"):
        qps, burst = raw_api.get("qps", api.qps), raw_api.get("burst", api.burst)
        if isinstance(qps, bool) or not isinstance(qps, (int, float)) or not 0 < qps <= 10_000:
            r.problem(raw_api, "kubegate_api.qps must be a number above 0 and at most 10000")
        elif isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 100_000:
            r.problem(raw_api, "kubegate_api.burst must be a whole number from 1 to 100000")
        else:
            api = ApiLimit(float(qps), burst)
    return LimitsPolicy(tuple(budgets), tuple(limits), failure, api), r.problems
