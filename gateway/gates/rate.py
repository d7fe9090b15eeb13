"""The rate gates: QPS limits and delete budgets with circuit breakers (policies/gates/limits.yaml).

QPS limits shape traffic: every limit whose User-Agent pattern, resource and verb match takes a
token; a refusal is 429 with Retry-After, which client-go waits out and retries.

Delete budgets are the brake on mass deletion. A delete is counted per object: one for a
`delete` or a pod eviction, every matching object for a `deletecollection` (the gateway lists
them first, as the caller, with the same selectors). The count must fit every window of the
budget, and is taken from all of them at once, or the whole request is refused and the budget's
circuit breaker opens: from then on every delete in that budget is refused until an operator runs
`kubegate breaker reset` or the breaker cools down. Budget refusals carry no Retry-After: client-go
would silently retry them; the user should read why instead.

`kubectl delete --all` (or `-l`) lists and then deletes one object at a time, so no single
request reveals the total. kubectl says which command it runs (`Kubectl-Command: kubectl delete`);
such a list is counted against the budget without charging it, and refused whole when the
deletes that follow could not all pass, so nothing is deleted. The header is client-set: honouring
it only ever adds a refusal; without it, each delete is still counted one by one.

A namespace delete counts as one object of the `namespaces` budget: kube-apiserver cascades it
server-side, invisibly to any proxy, so the starter policy gives namespaces their own very small
budget (and the change-rule library treats them as high risk) instead of guessing the cascade.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Callable

from ..context import GateContext
from ..errors import Denial
from . import lookups
from .policy import GatePolicyHolder
from ..identity.identity import Identity
from .limits_policy import Budget, LimitsPolicy, QpsLimit
from ..metrics import Metrics
from ..request.info import RequestInfo
from ..state.store import BreakerSpec, BreakerState, Bucket, StateStore, StoreUnavailable, TakeResult, wait_for
from ..clusters.client import UpstreamClient, UpstreamError

log = logging.getLogger("kubegate.limits")

TripHook = Callable[[BreakerState, GateContext], None]


def deleted_kind(info: RequestInfo) -> str | None:
    """The resource a request deletes objects of, or None if it deletes nothing."""
    if not info.is_resource:
        return None
    if info.verb in ("delete", "deletecollection") and not info.subresource:
        return info.group_resource
    if info.verb == "create" and info.api_group == "" and info.resource == "pods" and info.subresource == "eviction":
        return "pods"  # `kubectl drain` evicts: a pod deleted all the same
    return None


def is_dry_run(ctx: GateContext) -> bool:
    """Whether the apiserver will only pretend to delete: DeleteOptions from the body when there is
    one (delete.go), the query otherwise; a list previewing `kubectl delete` by its query."""
    if ctx.delete_options is not None:
        return ctx.delete_options.dry_run
    return ctx.query.dry_run


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def breaker_message(state: BreakerState) -> str:
    closes = state.closes_at()
    until = (f"it closes by itself at {_when(closes)}" if closes is not None
             else "it stays open until an operator resets it")
    return (f"the circuit breaker {state.key} is open since {_when(state.opened_at)} ({state.reason}); "
            f"{until}: `kubegate breaker reset {state.key}`")


class ApiRate:
    """Per-user QPS on kubegate's own API, before any of it answers: nobody floods the approval or
    access-request stores, or slows other users with them."""

    name = "api-limits"
    PREFIX = "/kubegate/"

    def __init__(self, policy: GatePolicyHolder, store: StateStore, *, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        self.policy, self.store, self.clock, self.metrics = policy, store, clock, metrics

    async def __call__(self, ctx: GateContext) -> None:
        if not ctx.request.raw_path.startswith(self.PREFIX) or ctx.identity is None:
            return
        limit = self.policy.current.limits.kubegate_api
        bucket = Bucket(f"api/user={ctx.identity.user}", limit.burst, limit.qps, "kubegate API")
        try:
            result = await self.store.take([bucket], 1, self.clock())
        except StoreUnavailable:
            return  # the API calls themselves need the store and say so (503)
        if not result.allowed:
            wait = max(1, math.ceil(result.retry_after))
            if self.metrics:
                self.metrics.gate_refusals.labels("limits", "qps", "kubegate-api").inc()
            raise Denial(429, f"kubegate: too many calls to kubegate's API: {limit.qps:g}/s (burst {limit.burst}) per "
                              f"user; retry after {wait}s", "TooManyRequests", retry_after=wait)


class RateGate:
    name = "limits"

    def __init__(self, policy: GatePolicyHolder, store: StateStore, counter: UpstreamClient, *,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None,
                 on_trip: TripHook | None = None) -> None:
        self.policy, self.store, self.counter, self.clock = policy, store, counter, clock
        self.metrics = metrics
        self.on_trip = on_trip or (lambda state, ctx: None)

    async def __call__(self, ctx: GateContext) -> None:
        if ctx.identity is None or ctx.info is None or ctx.upstream is None:
            raise Denial(500, "kubegate: the limits gate ran before authentication and routing", "InternalError")
        limits = self.policy.current.limits
        await self._qps(limits, ctx, ctx.identity, ctx.upstream.name, ctx.info)
        await self._budget(limits, ctx, ctx.identity, ctx.upstream.name, ctx.info)

    def _refused(self, reason: str, name: str) -> None:
        if self.metrics:
            self.metrics.gate_refusals.labels("limits", reason, name).inc()

    def _store_down(self, limits: LimitsPolicy, ctx: GateContext, info: RequestInfo, e: StoreUnavailable,
                    what: str) -> None:
        """The store did not answer: refuse or let through, as on_store_failure says for this verb."""
        if self.metrics:
            self.metrics.store_errors.labels(what).inc()
        outcome = limits.on_store_failure.mutating if info.mutating else limits.on_store_failure.read
        if outcome == "allow":
            ctx.annotations["kubegate.io/limits"] = f"{what} not enforced: state store unavailable"
            return
        self._refused("store-unavailable", what)
        # No Retry-After: client-go would retry silently ten times (a minute of kubectl hanging);
        # the user reads why at once, controllers retry through their own back-off.
        raise Denial(503, f"kubegate: {info.verb} is refused while the gateway's state store is unavailable "
                          f"({what} cannot be enforced): {e}", "ServiceUnavailable")

    async def _qps(self, limits: LimitsPolicy, ctx: GateContext, identity: Identity, cluster: str,
                   info: RequestInfo) -> None:
        user_agent = ctx.request.user_agent
        matched = [q for q in limits.qps if q.matches(info, user_agent, identity.groups)]
        if not matched:
            return
        buckets = [Bucket(f"qps/{q.scope(cluster, info, identity)}", q.burst, q.qps, q.name) for q in matched]
        try:
            result = await self.store.take(buckets, 1, self.clock())
        except StoreUnavailable as e:
            return self._store_down(limits, ctx, info, e, "QPS limits")
        if result.allowed:
            return
        limit: QpsLimit = matched[result.blocked]
        wait = max(1, math.ceil(result.retry_after))
        self._refused("qps", limit.name)
        per = f" per {', '.join(limit.per)}" if limit.per else ""
        raise Denial(429, f"kubegate: too many requests: limit {limit.name} allows {limit.qps:g}/s (burst "
                          f"{limit.burst}){per} for {info.verb} by clients matching {limit.user_agent!r}; "
                          f"retry after {wait}s", "TooManyRequests", retry_after=wait,
                     annotations={"kubegate.io/limits": f"qps {limit.name}"})

    async def _budget(self, limits: LimitsPolicy, ctx: GateContext, identity: Identity, cluster: str,
                      info: RequestInfo) -> None:
        kind = deleted_kind(info)
        previewing = (kind is None and info.verb == "list" and info.is_resource and not info.subresource
                      and ctx.request.headers.get("Kubectl-Command", "") == "kubectl delete")
        if previewing:
            kind = info.group_resource
        if kind is None:
            return
        budget = limits.budget_for(kind, identity.groups)
        if budget is None:
            return
        dry_run = is_dry_run(ctx)
        if dry_run:
            count = 0  # deletes nothing, charges nothing, but an open breaker still refuses it
        elif info.verb in ("deletecollection", "list"):
            try:
                count = await lookups.count(ctx, self.counter, ctx.query)
            except UpstreamError as e:
                self._refused("uncountable", budget.name)
                raise Denial(e.status if 400 <= e.status < 500 else 503,
                             f"kubegate: cannot count the {kind} this would delete, so it is refused: {e.message}",
                             "ServiceUnavailable" if e.status >= 500 or e.status < 400 else None) from None
        else:
            count = 1
        scope = budget.scope(cluster, info, identity)
        buckets = [Bucket(f"budget/{scope}/{w.label}", w.limit, w.limit / w.seconds, f"{w.label} ({w.limit})")
                   for w in budget.windows]
        breaker = BreakerSpec(scope, budget.cooldown_seconds, f"{budget.name}: {budget.describe()}")
        how = "kubectl delete of" if previewing else info.verb
        reason = f"{identity.user}: {how} {count} {kind} did not fit window {{window}}"

        async def take(check_only: bool) -> None:
            try:
                # A preview (the list before `kubectl delete --all`) meets an open breaker but never
                # opens one: a reader cannot stop everyone's deletes with a header of its choosing.
                result = await self.store.take(buckets, count, self.clock(), breaker, reason, check_only=check_only,
                                               trip=not previewing)
            except StoreUnavailable as e:
                return self._store_down(limits, ctx, info, e, "delete budgets")
            self._observe(budget, scope, result)
            if not result.allowed:
                self._refuse_delete(ctx, budget, kind, count, result, buckets)

        async def charge() -> None:
            await take(check_only=False)
            ctx.after_response.append(give_back)

        async def give_back(status: int) -> None:
            # The cluster did not carry the delete out (404 for a typo, 409, 422, a 429 from a
            # disruption budget, a 5xx): its tokens go back, so mistakes do not open breakers.
            if 200 <= status < 300:
                return
            try:
                await self.store.take(buckets, -count, self.clock())
            except StoreUnavailable:
                log.warning("could not give %s %s back to budget %s: the store is unavailable", count, kind, scope)
            ctx.annotations["kubegate.io/budget"] += f" (given back: the cluster answered {status})"

        ctx.annotations["kubegate.io/budget"] = f"{scope}: {count} {kind}" + (" (dry run)" if dry_run else "")
        # Checked here (an empty budget refuses now and opens the breaker), charged only when every
        # later gate has let the request through: a delete waiting for approval costs nothing.
        await take(check_only=True)
        if not previewing and not dry_run:
            ctx.commits.append(charge)

    def _next_fit(self, buckets: list[Bucket], levels: tuple[float, ...], count: int) -> str:
        """When the budget will have room for `count` again, in words."""
        waits = [wait_for(level, count, bucket) for bucket, level in zip(buckets, levels)]
        wait = max(waits) if waits else 0.0
        if math.isinf(wait):
            return f"{count} never fit in one request: delete fewer at a time"
        if wait <= 0:
            return f"the budget has room for {count} now"
        return f"the budget has room for {count} again at {_when(self.clock() + wait)} (in {math.ceil(wait)}s)"

    def _refuse_delete(self, ctx: GateContext, budget: Budget, kind: str, count: int, result: TakeResult,
                       buckets: list[Bucket]) -> None:
        if result.tripped and result.breaker is not None:
            self._trip(budget, result.breaker, ctx)
        fit = self._next_fit(buckets, result.remaining, count)
        if result.breaker is not None and not result.tripped:
            self._refused("breaker-open", budget.name)
            raise Denial(429, f"kubegate: deletes of {kind} are stopped: {breaker_message(result.breaker)}; "
                              f"{fit}", "TooManyRequests", annotations={"kubegate.io/breaker": result.breaker.key})
        window = budget.windows[result.blocked]
        left = math.floor(result.remaining[result.blocked] + 1e-9)
        self._refused("budget", budget.name)
        text = (f"kubegate: delete budget {budget.name} ({budget.describe()}) has room for {left} more {kind} in "
                f"its {window.label} window; this request would delete {count}, so nothing was deleted; {fit}")
        if result.breaker is not None:
            text += f". {breaker_message(result.breaker)}"
        raise Denial(429, text, "TooManyRequests",
                     annotations={"kubegate.io/breaker": result.breaker.key if result.breaker else ""})

    def _observe(self, budget: Budget, scope: str, result: TakeResult) -> None:
        if self.metrics is None:
            return
        for window, remaining in zip(budget.windows, result.remaining):
            self.metrics.budget_remaining.labels(budget.name, scope, window.label).set(remaining)

    def _trip(self, budget: Budget, state: BreakerState, ctx: GateContext) -> None:
        log.warning("circuit breaker %s opened: %s", state.key, state.reason)
        if self.metrics:
            self.metrics.breaker_trips.labels(budget.name).inc()
            self.metrics.breaker_open.labels(budget.name, state.key).set(1)
        ctx.annotations["kubegate.io/breaker-tripped"] = state.key
        self.on_trip(state, ctx)
