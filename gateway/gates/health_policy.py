"""Alert-aware gating's policy (health.yaml): Alertmanagers, and gates that hold changes to a cluster
while a matching alert fires there.

    alertmanagers:
      - name: monitoring
        url: https://alertmanager.monitoring.svc:9093   # API v2 is under <url>/api/v2
        ca_file: ca/alertmanager.crt     # relative to the policy directory; default: system CAs
        timeout: 2s                      # at most 10s
        cache: 10s                       # answers are reused this long (at most 10s)
    gates:
      - name: critical-alerts
        description: a cluster with a critical alert firing takes no changes but break-glass
        alertmanager: monitoring
        matchers: ['severity="critical"', 'cluster="{cluster}"']   # {cluster}: the request's cluster
        outcome: break-glass             # or deny
        on_unreachable: Fail             # Fail (refuse, 503) or Ignore (let changes pass): no default
        match: {clusters: ["prod-*"]}    # which changes (default: every mutation everywhere)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import yamlsrc
from .change_policy import Match, _Reader

FILE = "health.yaml"
MAX_CACHE_SECONDS = 10.0
OUTCOMES = ("break-glass", "deny")
FAILURE_POLICIES = ("Fail", "Ignore")
_MATCHER = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*(=|!=|=~|!~)"(?:[^"\\]|\\.)*"$')


@dataclass(frozen=True)
class Alertmanager:
    name: str
    url: str
    ca_file: str = ""
    timeout_seconds: float = 2.0
    cache_seconds: float = 10.0
    source: str = ""


@dataclass(frozen=True)
class AlertGate:
    name: str
    description: str
    alertmanager: str
    matchers: tuple[str, ...]
    outcome: str
    on_unreachable: str
    match: Match
    source: str = ""

    def filters(self, cluster: str) -> tuple[str, ...]:
        """The Alertmanager filters for a request to CLUSTER (`{cluster}` filled in)."""
        return tuple(m.replace("{cluster}", cluster) for m in self.matchers)


@dataclass(frozen=True)
class HealthPolicy:
    alertmanagers: tuple[Alertmanager, ...] = ()
    gates: tuple[AlertGate, ...] = ()

    def alertmanager(self, name: str) -> Alertmanager:
        return next(a for a in self.alertmanagers if a.name == name)


def _alertmanager(r: _Reader, node: Any, i: int, directory: Path) -> Alertmanager | None:
    what = f"alertmanagers[{i}]"
    if not r.keys(node, {"name", "url", "ca_file", "timeout", "cache"}, what):
        return None
    name = r.ident(node, "name", what, f"alertmanager-{i}")
    what = f"alertmanager {name}"
    url = str(node.get("url") or "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problem(node, f"{what}.url must be an http(s):// URL of an Alertmanager (its API v2 is under it)")
    ca_file = r.ca_file(node, what, directory)
    timeout = r.timeout(node, what, 10)
    cache = yamlsrc.duration(node.get("cache", "10s"))
    if cache is None or cache > MAX_CACHE_SECONDS:
        r.problem(node, f"{what}.cache must be a duration of at most {MAX_CACHE_SECONDS:g}s (0: ask every time)")
        cache = MAX_CACHE_SECONDS
    return Alertmanager(name, url.rstrip("/"), ca_file, timeout, cache, yamlsrc.where(r.path, node))


def _gate(r: _Reader, node: Any, i: int, names: set[str]) -> AlertGate | None:
    what = f"gates[{i}]"
    if not r.keys(node, {"name", "description", "alertmanager", "matchers", "outcome", "on_unreachable", "match"},
                  what):
        return None
    name = r.ident(node, "name", what, f"gate-{i}")
    what = f"alert gate {name}"
    alertmanager = str(node.get("alertmanager", ""))
    if alertmanager not in names:
        r.problem(node, f"{what}.alertmanager: no Alertmanager named {alertmanager!r} in alertmanagers")
    matchers = node.get("matchers")
    if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers):
        r.problem(node, f"{what}.matchers must be a non-empty list such as ['severity=\"critical\"', "
                        "'cluster=\"{cluster}\"']")
        matchers = []
    for m in matchers:
        if not _MATCHER.match(m.replace("{cluster}", "x")):
            r.problem(node, f"{what}.matchers: {m!r} is not an Alertmanager matcher (label, one of = != =~ !~, "
                            "a double-quoted value)")
    outcome = node.get("outcome")
    if outcome not in OUTCOMES:
        r.problem(node, f"{what}.outcome must be one of {', '.join(OUTCOMES)}")
    policy = node.get("on_unreachable")
    if policy not in FAILURE_POLICIES:
        r.problem(node, f"{what}.on_unreachable must be Fail or Ignore (no default: say what happens when the "
                        "Alertmanager cannot be asked)")
    return AlertGate(name, str(node.get("description", "")), alertmanager, tuple(matchers), str(outcome),
                     str(policy), r.match(node.get("match"), what), yamlsrc.where(r.path, node))


def load(directory: Path) -> tuple[HealthPolicy, list[str]]:
    path = directory / FILE
    if not path.exists():
        return HealthPolicy(), []
    r = _Reader(path)
    data, error = yamlsrc.load(path)
    if error:
        return HealthPolicy(), [error]
    if data is None:
        return HealthPolicy(), []
    if not r.keys(data, {"alertmanagers", "gates"}, path.name):
        return HealthPolicy(), r.problems
    raw_ams, raw_gates = data.get("alertmanagers") or [], data.get("gates") or []
    if not isinstance(raw_ams, list) or not isinstance(raw_gates, list):
        r.problem(data, "alertmanagers and gates must be lists")
        return HealthPolicy(), r.problems
    ams = [a for i, n in enumerate(raw_ams) if (a := _alertmanager(r, n, i, directory))]
    gates = [g for i, n in enumerate(raw_gates) if (g := _gate(r, n, i, {a.name for a in ams}))]
    r.duplicates(ams, "name", "alertmanager")
    r.duplicates(gates, "name", "alert gate")
    return HealthPolicy(tuple(ams), tuple(gates)), r.problems

