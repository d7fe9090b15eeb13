"""The limits gate's decisions one request at a time, with the store in this process: what a dead
store means for each verb and each `on_store_failure`, and what each decision leaves in the audit
annotations and the metrics (the end-to-end behaviour is in test_rate.py and test_rate_replicas.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Sequence

from multidict import CIMultiDict

from kubegate.gateway.clusters.client import UpstreamClient
from kubegate.gateway.clusters.upstreams import Upstream
from kubegate.gateway.context import GateContext, RequestView
from kubegate.gateway.errors import Denial
from kubegate.gateway.gates.policy import GatePolicyHolder
from kubegate.gateway.gates.rate import ApiRate, RateGate
from kubegate.gateway.identity.identity import Identity
from kubegate.gateway.metrics import Metrics
from kubegate.gateway.request.info import classify
from kubegate.gateway.request.query import Query
from kubegate.gateway.state.store import Bucket, MemoryStore, StoreUnavailable, TakeResult

LIMITS = """
budgets:
  - name: pod-deletes
    resources: [pods]
    per: [cluster]
    windows: {1m: 2}
    breaker: {cooldown: manual}
qps:
  - name: kubectl-writes
    user_agent: "kubectl/*"
    verbs: [create, list]
    resources: [configmaps]
    per: [user]
    qps: 1
    burst: 1
"""
NOW = 1_800_000_000.0
KUBECTL = "kubectl/v1.37.0 (linux/amd64) kubernetes/abcdef"


class DeadStore(MemoryStore):
    """A store whose every take fails as Redis does when it is down."""

    async def take(self, buckets: Sequence[Bucket], cost: float, now: float, *args: Any, **kwargs: Any) -> TakeResult:
        raise StoreUnavailable("Redis at 127.0.0.1:1 did not answer")


def holder(tmp_path: Path, extra: str = "") -> GatePolicyHolder:
    gates = tmp_path / "gates"
    gates.mkdir(exist_ok=True)
    (gates / "limits.yaml").write_text(LIMITS + extra)
    return GatePolicyHolder(gates)


def limits_gate(tmp_path: Path, store: MemoryStore, extra: str = "", clock: Any = lambda: NOW,
                **kwargs: Any) -> tuple[RateGate, Metrics]:
    """The limits gate over LIMITS (+ EXTRA) and STORE, at NOW unless CLOCK says otherwise, and its metrics."""
    metrics = Metrics()
    return RateGate(holder(tmp_path, extra), store, UpstreamClient(), clock=clock, metrics=metrics, **kwargs), metrics


def request(method: str, path: str, query: str = "", user_agent: str = KUBECTL) -> GateContext:
    parsed = Query.parse(query)
    ctx = GateContext(RequestView(method, path, query, CIMultiDict({"User-Agent": user_agent}), b"", "127.0.0.1"))
    ctx.identity, ctx.query, ctx.info = Identity("ada", ("kubegate:sre",)), parsed, classify(method, path, parsed)
    ctx.upstream = Upstream("hz-1", "127.0.0.1", 1, "", "127.0.0.1", Path("/dev/null"))
    return ctx


def run(gate: Any, ctx: GateContext) -> Denial | None:
    try:
        asyncio.run(gate(ctx))
    except Denial as denial:
        return denial
    return None


def count(metrics: Metrics, metric: str, **labels: str) -> float:
    """A counter's value (0 when never counted)."""
    return metrics.registry.get_sample_value(metric, labels) or 0.0


def gauge(metrics: Metrics, metric: str, **labels: str) -> float | None:
    """A gauge's value, None when never set."""
    return metrics.registry.get_sample_value(metric, labels)


DELETE_POD = ("DELETE", "/api/v1/namespaces/shop/pods/web-0")
CREATE_CM = ("POST", "/api/v1/namespaces/shop/configmaps")
LIST_CM = ("GET", "/api/v1/namespaces/shop/configmaps")


# -- a dead store ----------------------------------------------------------------------------------

def test_a_dead_store_refuses_a_delete_and_says_which_limit_it_cannot_enforce(tmp_path: Path) -> None:
    gate, metrics = limits_gate(tmp_path, DeadStore())
    denial = run(gate, request(*DELETE_POD))
    assert denial is not None and denial.code == 503 and denial.reason == "ServiceUnavailable"
    assert "delete is refused while the gateway's state store is unavailable (delete budgets cannot be enforced): " \
           "Redis at 127.0.0.1:1 did not answer" in denial.message
    assert denial.retry_after is None  # client-go would otherwise retry it silently for a minute
    assert count(metrics, "kubegate_store_unavailable_total", use="delete budgets") == 1
    assert count(metrics, "kubegate_gate_refusals_total", gate="limits", reason="store-unavailable",
                 name="delete budgets") == 1


def test_a_dead_store_refuses_a_qps_limited_write_before_its_budget(tmp_path: Path) -> None:
    gate, metrics = limits_gate(tmp_path, DeadStore())
    denial = run(gate, request(*CREATE_CM))
    assert denial is not None and denial.code == 503
    assert "create is refused" in denial.message and "(QPS limits cannot be enforced)" in denial.message
    assert count(metrics, "kubegate_store_unavailable_total", use="QPS limits") == 1


def test_a_dead_store_lets_a_read_through_unlimited_and_says_so_in_the_audit(tmp_path: Path) -> None:
    gate, metrics = limits_gate(tmp_path, DeadStore())
    ctx = request(*LIST_CM)
    assert run(gate, ctx) is None
    assert ctx.annotations["kubegate.io/limits"] == "QPS limits not enforced: state store unavailable"
    assert count(metrics, "kubegate_store_unavailable_total", use="QPS limits") == 1
    assert count(metrics, "kubegate_gate_refusals_total", gate="limits", reason="store-unavailable",
                 name="QPS limits") == 0


def test_a_read_no_limit_matches_does_not_touch_the_store(tmp_path: Path) -> None:
    gate, metrics = limits_gate(tmp_path, DeadStore())
    ctx = request("GET", "/api/v1/namespaces/shop/configmaps", user_agent="helm/3.16")  # not kubectl: no limit
    assert run(gate, ctx) is None
    assert "kubegate.io/limits" not in ctx.annotations
    assert count(metrics, "kubegate_store_unavailable_total", use="QPS limits") == 0


def test_on_store_failure_can_refuse_reads_and_allow_writes(tmp_path: Path) -> None:
    gate, _ = limits_gate(tmp_path, DeadStore(), "on_store_failure: {mutating: allow, read: deny}\n")
    listed = run(gate, request(*LIST_CM))
    assert listed is not None and listed.code == 503 and "list is refused" in listed.message
    created = request(*CREATE_CM)
    assert run(gate, created) is None
    assert created.annotations["kubegate.io/limits"] == "QPS limits not enforced: state store unavailable"
    deleted = request(*DELETE_POD)
    assert run(gate, deleted) is None
    assert deleted.annotations["kubegate.io/limits"] == "delete budgets not enforced: state store unavailable"


def test_the_kubegate_api_limit_passes_when_the_store_is_dead_and_refuses_past_its_burst(tmp_path: Path) -> None:
    assert run(ApiRate(holder(tmp_path), DeadStore(), clock=lambda: NOW), request("GET", "/kubegate/v1/approvals")) is None
    metrics = Metrics()
    gate = ApiRate(holder(tmp_path, "kubegate_api: {qps: 1, burst: 2}\n"), MemoryStore(), clock=lambda: NOW,
                   metrics=metrics)
    assert run(gate, request("GET", "/api/v1/namespaces")) is None  # not kubegate's API: not counted
    assert [run(gate, request("GET", "/kubegate/v1/approvals")) for _ in range(2)] == [None, None]
    third = run(gate, request("GET", "/kubegate/v1/approvals"))
    assert third is not None and third.code == 429 and third.retry_after == 1
    assert "too many calls to kubegate's API: 1/s (burst 2) per user; retry after 1s" in third.message
    assert count(metrics, "kubegate_gate_refusals_total", gate="limits", reason="qps", name="kubegate-api") == 1


# -- what each decision leaves behind ---------------------------------------------------------------

def test_a_qps_refusal_names_its_limit_in_the_status_and_the_audit(tmp_path: Path) -> None:
    gate, metrics = limits_gate(tmp_path, MemoryStore())
    assert run(gate, request(*CREATE_CM)) is None
    denial = run(gate, request(*CREATE_CM))
    assert denial is not None and denial.code == 429 and denial.retry_after == 1
    assert denial.annotations["kubegate.io/limits"] == "qps kubectl-writes"
    assert "limit kubectl-writes allows 1/s (burst 1) per user for create by clients matching 'kubectl/*'" \
           in denial.message
    assert count(metrics, "kubegate_gate_refusals_total", gate="limits", reason="qps", name="kubectl-writes") == 1


def test_a_delete_is_checked_now_charged_at_commit_and_annotated(tmp_path: Path) -> None:
    gate, metrics = limits_gate(tmp_path, MemoryStore())
    ctx = request(*DELETE_POD)
    assert run(gate, ctx) is None
    assert ctx.annotations["kubegate.io/budget"] == "pod-deletes/cluster=hz-1: 1 pods"
    remaining = {"budget": "pod-deletes", "scope": "pod-deletes/cluster=hz-1", "window": "1m"}
    assert gauge(metrics, "kubegate_budget_remaining", **remaining) == 2
    assert len(ctx.commits) == 1
    # Not charged before commit: two more checks still fit a budget of 2.
    for _ in range(2):
        assert run(gate, request(*DELETE_POD)) is None
    asyncio.run(ctx.commits[0]())
    assert len(ctx.after_response) == 1


def test_a_dry_run_delete_is_annotated_and_charges_nothing(tmp_path: Path) -> None:
    gate = limits_gate(tmp_path, MemoryStore())[0]
    ctx = request(*DELETE_POD, query="dryRun=All")
    assert run(gate, ctx) is None
    assert ctx.annotations["kubegate.io/budget"].endswith(": 0 pods (dry run)")
    assert ctx.commits == []


def test_a_delete_the_cluster_refused_gives_its_token_back_and_says_so(tmp_path: Path) -> None:
    async def scenario() -> tuple[GateContext, list[Denial | None]]:
        gate = limits_gate(tmp_path, MemoryStore())[0]
        first = request(*DELETE_POD)
        for ctx, status in ((first, 404), (request(*DELETE_POD), 200), (request(*DELETE_POD), 299)):
            await gate(ctx)
            await ctx.commits[0]()
            await ctx.after_response[0](status)
        outcomes: list[Denial | None] = []
        try:
            await gate(request(*DELETE_POD))  # 2 of 2 spent (the 200 and the 299): the 404's came back
        except Denial as refused:
            outcomes.append(refused)
        else:
            outcomes.append(None)
        return first, outcomes
    first, outcomes = asyncio.run(scenario())
    assert first.annotations["kubegate.io/budget"] == "pod-deletes/cluster=hz-1: 1 pods (given back: the cluster answered 404)"
    assert outcomes[0] is not None and outcomes[0].code == 429


def test_an_eviction_spends_the_pod_budget_as_a_delete_does(tmp_path: Path) -> None:
    gate = limits_gate(tmp_path, MemoryStore())[0]
    ctx = request("POST", "/api/v1/namespaces/shop/pods/web-0/eviction")
    assert run(gate, ctx) is None
    assert ctx.annotations["kubegate.io/budget"] == "pod-deletes/cluster=hz-1: 1 pods"
    status = request("PUT", "/api/v1/namespaces/shop/pods/web-0/status")
    assert run(gate, status) is None and "kubegate.io/budget" not in status.annotations


def test_the_delete_that_empties_the_budget_trips_the_breaker_and_the_next_meets_it(tmp_path: Path) -> None:
    tripped: list[str] = []
    clock = [NOW]
    gate, metrics = limits_gate(tmp_path, MemoryStore(), clock=lambda: clock[0],
                                on_trip=lambda state, ctx: tripped.append(state.key))

    async def scenario() -> tuple[Denial, GateContext, Denial]:
        for _ in range(2):
            ctx = request(*DELETE_POD)
            await gate(ctx)
            await ctx.commits[0]()
        over = request(*DELETE_POD)
        try:
            await gate(over)
            raise AssertionError("the third delete passed")
        except Denial as budget:
            first = budget
        try:
            await gate(request(*DELETE_POD))
            raise AssertionError("the breaker let a delete through")
        except Denial as breaker:
            return first, over, breaker
    budget, over, breaker = asyncio.run(scenario())
    assert budget.code == 429 and "has room for 0 more pods in its 1m window; this request would delete 1" \
        in budget.message
    assert "so nothing was deleted; the budget has room for 1 again at " in budget.message
    assert "(in 30s). " in budget.message and "reset" in budget.message.split("(in 30s). ")[1]  # the breaker, after
    assert gauge(metrics, "kubegate_budget_remaining", budget="pod-deletes", scope="pod-deletes/cluster=hz-1",
                 window="1m") == 0
    assert over.annotations["kubegate.io/breaker-tripped"] == "pod-deletes/cluster=hz-1" == tripped[0]
    assert budget.annotations["kubegate.io/breaker"] == "pod-deletes/cluster=hz-1"
    assert breaker.code == 429 and "deletes of pods are stopped" in breaker.message
    assert "the budget has room for 1 again at" in breaker.message
    clock[0] += 120  # the window has refilled; a manual breaker stays open
    later = run(gate, request(*DELETE_POD))
    assert later is not None and "deletes of pods are stopped" in later.message
    assert later.message.endswith("; the budget has room for 1 now")
    assert breaker.annotations["kubegate.io/breaker"] == "pod-deletes/cluster=hz-1"
    assert count(metrics, "kubegate_breaker_trips_total", budget="pod-deletes") == 1
    assert gauge(metrics, "kubegate_breaker_open", budget="pod-deletes", scope="pod-deletes/cluster=hz-1") == 1
    assert count(metrics, "kubegate_gate_refusals_total", gate="limits", reason="breaker-open", name="pod-deletes") == 2
    assert count(metrics, "kubegate_gate_refusals_total", gate="limits", reason="budget", name="pod-deletes") == 1


def test_the_gate_refuses_a_request_it_cannot_place_rather_than_pass_it(tmp_path: Path) -> None:
    gate = limits_gate(tmp_path, MemoryStore())[0]
    ctx = request(*DELETE_POD)
    ctx.identity = None
    denial = run(gate, ctx)
    assert denial is not None and denial.code == 500

