"""kubegate's API for circuit breakers, under /kubegate/v1/breakers (used by `kubegate breaker`).

    GET  /kubegate/v1/breakers         the open breakers the caller may see
    POST /kubegate/v1/breakers/reset   {"breaker": "<key>"}: close it (and audit who did)

Seeing and resetting are authorized by the policy in force as `list` and `update` on
`breakers.kubegate.io`, named after the budget, in the breaker's cluster and namespace.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

from ..authz.authorizer import PolicyHolder
from ..context import GateContext
from ..errors import Answer, Denial
from ..identity.identity import Identity
from ..metrics import Metrics
from .rate import breaker_message
from ..state.store import BreakerState, StateStore, StoreUnavailable

log = logging.getLogger("kubegate.breakers")

ResetHook = Callable[[BreakerState, Identity], None]


def breaker_scope(key: str) -> tuple[str, str, str]:
    """(budget, cluster, namespace) of a breaker key such as `pod-deletes/cluster=hz-1/namespace=shop`.
    A user name (last, and free-form) may contain anything, so it is cut off first."""
    head = key.split("/user=", 1)[0]
    parts = head.split("/")
    fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    namespace = fields.get("namespace", "")
    return parts[0], fields.get("cluster", "*"), "" if namespace == "-" else namespace


def breaker_json(state: BreakerState) -> dict[str, object]:
    budget, cluster, namespace = breaker_scope(state.key)
    return {"kind": "Breaker", "key": state.key, "budget": budget, "cluster": cluster, "namespace": namespace,
            "policy": state.label, "openedAt": state.opened_at, "reason": state.reason,
            "closesAt": state.closes_at(), "message": breaker_message(state)}


class BreakerApi:
    name = "breaker-api"
    PREFIX = "/kubegate/v1/breakers"

    def __init__(self, store: StateStore, policy: PolicyHolder, *, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None, on_reset: ResetHook | None = None) -> None:
        self.store, self.policy, self.clock, self.metrics = store, policy, clock, metrics
        self.on_reset = on_reset or (lambda state, who: None)

    def _allowed(self, identity: Identity, verb: str, key: str) -> tuple[bool, str]:
        budget, cluster, namespace = breaker_scope(key)
        decision = self.policy.decide_own(identity, cluster, verb, "breakers", namespace=namespace, name=budget)
        return decision.allowed, decision.reason

    async def __call__(self, ctx: GateContext) -> None:
        path = ctx.request.own_path
        if not (path == self.PREFIX or path.startswith(self.PREFIX + "/")):
            return
        assert ctx.identity is not None
        method = ctx.request.method
        try:
            if path == self.PREFIX and method == "GET":
                states = await self.store.breakers(self.clock())
                visible = [s for s in states if self._allowed(ctx.identity, "list", s.key)[0]]
                raise Answer(200, "", body={"kind": "BreakerList", "items": [breaker_json(s) for s in visible]})
            if path == self.PREFIX + "/reset" and method == "POST":
                try:
                    key = json.loads(ctx.request.body or b"{}")["breaker"]
                    if not isinstance(key, str) or not key:
                        raise ValueError("breaker must be a non-empty string")
                except (ValueError, KeyError, TypeError) as e:
                    raise Denial(400, f'kubegate: a reset needs {{"breaker": "<key>"}} ({e})', "BadRequest") from None
                allowed, why = self._allowed(ctx.identity, "update", key)
                if not allowed:
                    raise Denial(403, f'kubegate: user "{ctx.identity.user}" may not reset breaker {key} ({why})',
                                 "Forbidden")
                ctx.annotations["kubegate.io/breaker"] = key
                state = await self.store.reset_breaker(key)
                if state is None:
                    raise Denial(404, f"kubegate: breaker {key} is not open", "NotFound")
                log.warning("circuit breaker %s reset by %s", key, ctx.identity.user)
                if self.metrics:
                    self.metrics.breaker_open.labels(breaker_scope(key)[0], key).set(0)
                self.on_reset(state, ctx.identity)
                raise Answer(200, "", body={**breaker_json(state), "resetBy": ctx.identity.user})
        except StoreUnavailable as e:
            raise Denial(503, f"kubegate: breakers are unavailable: {e}", "ServiceUnavailable", retry_after=5) from None
        raise Denial(404, f"kubegate: no such breaker API call: {method} {path}", "NotFound")
