"""Alert-aware gating: while a matching alert fires in a cluster's Alertmanager, a change to that
cluster needs break-glass (or is refused), per gate in health.yaml (health_policy.py).

Alertmanager's API v2 is asked for the active, unsilenced, uninhibited alerts that match a gate's
matchers (`GET <url>/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=...`), at most
once per `cache` (≤ 10 s) for the same question, by each process. The refusal names the alerts and
since when they fire. An Alertmanager that cannot be asked (unreachable, slow, an answer that is
not a list of alerts) is the gate's `on_unreachable`: Fail refuses the change (503), Ignore lets it
through (annotated, logged). `kubegate_alert_gate_firing{gate,cluster}` is each gate's view of
each cluster it was asked about: the alerts firing, or -1 while it cannot tell.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp

from ..context import GateContext
from ..errors import Denial
from ..metrics import Metrics
from .health_policy import AlertGate, Alertmanager, HealthPolicy

log = logging.getLogger("kubegate.health")
FAILURE_CACHE_SECONDS = 1.0  # a failed ask is repeated at most this often (a down Alertmanager is not hammered)

PolicySource = Callable[[], HealthPolicy]


class Unreachable(Exception):
    pass


class HealthGate:
    name = "health"

    def __init__(self, policy: PolicySource, *, clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics | None = None) -> None:
        self.policy, self.clock, self.metrics = policy, clock, metrics
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, list[dict[str, Any]] | Unreachable]] = {}

    async def __call__(self, ctx: GateContext) -> None:
        info = ctx.info
        if info is None or ctx.upstream is None:
            return
        policy = self.policy()
        cluster = ctx.upstream.name
        for gate in policy.gates:
            if not gate.match.matches(cluster, info):
                continue
            am = policy.alertmanager(gate.alertmanager)
            try:
                firing = await self._firing(am, gate.filters(cluster))
            except Unreachable as e:
                self._observe(gate, cluster, -1)
                ctx.annotations[f"kubegate.io/alert-gate.{gate.name}"] = f"unreachable ({e}): {gate.on_unreachable}"
                if gate.on_unreachable == "Fail":
                    raise Denial(503, f"kubegate: alert gate {gate.name} cannot ask Alertmanager {am.name} whether "
                                      f"cluster {cluster} is healthy ({e}), and its policy (on_unreachable: Fail) "
                                      "refuses changes until it can", "ServiceUnavailable") from None
                log.warning("alert gate %s: Alertmanager %s cannot be asked (%s); on_unreachable: Ignore lets %s through",
                            gate.name, am.name, e, info.verb)
                continue
            self._observe(gate, cluster, len(firing))
            if not firing:
                continue
            names = ", ".join(f"{a.get('labels', {}).get('alertname', '?')} (since {a.get('startsAt', '?')})"
                              for a in firing[:5]) + (f" and {len(firing) - 5} more" if len(firing) > 5 else "")
            text = (f"alert gate {gate.name}: {len(firing)} alert{'s' if len(firing) != 1 else ''} firing in "
                    f"cluster {cluster}: {names}" + (f" ({gate.description})" if gate.description else ""))
            ctx.annotations[f"kubegate.io/alert-gate.{gate.name}"] = names[:500]
            if gate.outcome == "deny":
                raise Denial(403, f"kubegate: refused by {text}", "Forbidden")
            ctx.break_glass = True
            ctx.approval_reasons.append(text)

    def _observe(self, gate: AlertGate, cluster: str, value: int) -> None:
        if self.metrics is not None:
            self.metrics.alert_gate_firing.labels(gate.name, cluster).set(value)

    async def _firing(self, am: Alertmanager, filters: tuple[str, ...]) -> list[dict[str, Any]]:
        key = (am.name, filters)
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None:
            at, answer = hit
            fresh = am.cache_seconds if not isinstance(answer, Unreachable) else min(am.cache_seconds,
                                                                                      FAILURE_CACHE_SECONDS)
            if now - at < fresh:
                if isinstance(answer, Unreachable):
                    raise answer
                return answer
        try:
            alerts = await self._ask(am, filters)
        except Unreachable as e:
            self._remember(key, now, e)
            raise
        self._remember(key, now, alerts)
        return alerts

    def _remember(self, key: tuple[str, tuple[str, ...]], now: float,
                  answer: list[dict[str, Any]] | Unreachable) -> None:
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, answer)

    async def _ask(self, am: Alertmanager, filters: tuple[str, ...]) -> list[dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        query = urlencode([("active", "true"), ("silenced", "false"), ("inhibited", "false")]
                          + [("filter", f) for f in filters])
        try:
            async with self._session.get(f"{am.url}/api/v2/alerts?{query}", ssl=self._ssl(am),
                                         timeout=aiohttp.ClientTimeout(total=am.timeout_seconds)) as resp:
                if resp.status != 200:
                    raise Unreachable(f"HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
            raise Unreachable("timed out" if isinstance(e, asyncio.TimeoutError) else str(e) or type(e).__name__) from e
        if not isinstance(data, list) or not all(isinstance(a, dict) for a in data):
            raise Unreachable("the answer is not a list of alerts")
        return [a for a in data if (a.get("status") or {}).get("state", "active") == "active"]

    def _ssl(self, am: Alertmanager) -> ssl.SSLContext | bool:
        if not am.url.startswith("https://"):
            return False
        found = self._contexts.get(am.ca_file)
        if found is None:
            found = ssl.create_default_context(cafile=am.ca_file or None)
            self._contexts[am.ca_file] = found
        return found

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
