"""Rate gates shared by two gateway replicas through one real redis-server, and Redis failing.

Exactness: 64 concurrent deleters spread over two replicas (each one process, or two workers)
against one budget of N must get exactly N deletes to the cluster, counted in the emulator's
request log, run after run.
"""

from __future__ import annotations

import contextlib
import asyncio
import os
import signal
import ssl
import time
import uuid
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest
from kubernetes import client as k8s

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, python_client, start_gateway, start_replicas, wait_until
from tests.redis_server import RedisServer

BUDGET = 23
PODS = 100
DELETERS = 64
QPS, BURST = 4, 6

LIMITS = f"""
budgets:
  - name: pod-deletes
    resources: [pods]
    per: [cluster, namespace]   # each round uses its own namespace, so its own budget
    windows: {{24h: {BUDGET}}}
qps:
  - name: lists
    resources: [configmaps]
    verbs: [list]
    per: [user]
    qps: {QPS}
    burst: {BURST}
"""


class Pair:
    def __init__(self, a: GatewayHandle, b: GatewayHandle, upstream: harness.RunningEmulator,
                 workers: int = 1, redis: RedisServer | None = None) -> None:
        self.a, self.b, self.upstream, self.workers, self.redis = a, b, upstream, workers, redis
        self.direct = k8s.CoreV1Api(python_client(upstream.url, upstream.ca_file, upstream.admin_token))

    def seed(self, namespace: str, count: int) -> list[str]:
        self.direct.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        names = [f"p{i:03d}" for i in range(count)]
        for name in names:
            self.direct.create_namespaced_pod(namespace, k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(name=name),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="busybox")])))
        return names


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process-each", "two-workers-each"])
def pair(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Two replicas sharing one Redis: single processes, or `serve --workers 2` each (four processes
    taking from the same buckets)."""
    workers = request.param
    state = tmp_path_factory.mktemp("replicas")
    with contextlib.ExitStack() as started:  # whatever started is stopped, even when a later start fails
        upstream = harness.start(state / "emulator")
        started.callback(upstream.stop)
        redis, a, b = start_replicas(started, state, upstream, "r", workers=(workers, workers), limits=LIMITS)
        yield Pair(a, b, upstream, workers, redis)


async def _hammer(pair: Pair, method: str, paths: list[str], token: str, *, workers: int = DELETERS) -> list[int]:
    """`workers` concurrent clients, alternating between the two replicas, one request per path."""
    ctx = ssl.create_default_context(cafile=str(pair.a.ca_file))
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in paths:
        queue.put_nowait(p)
    codes: list[int] = []

    async def worker(i: int, session: aiohttp.ClientSession) -> None:
        base = (pair.a if i % 2 == 0 else pair.b).url
        while not queue.empty():
            path = queue.get_nowait()
            async with session.request(method, base + path, ssl=ctx,
                                       headers={"Authorization": f"Bearer {token}"}) as resp:
                await resp.read()
                codes.append(resp.status)

    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(i, session) for i in range(workers)))
    return codes


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_deleters_on_two_replicas_get_exactly_the_budget(pair: Pair, round_: int) -> None:
    namespace = f"round-{round_}-{uuid.uuid4().hex[:4]}"
    names = pair.seed(namespace, PODS)
    pair.upstream.clear_requests()
    token = pair.a.token("ada")
    paths = [f"/api/v1/namespaces/{namespace}/pods/{n}" for n in names]
    before = {gw.url: served(gw) for gw in (pair.a, pair.b)} if pair.workers > 1 else {}
    codes = asyncio.run(_hammer(pair, "DELETE", paths, token))
    reached = [r for r in pair.upstream.requests if r.method == "DELETE" and f"/namespaces/{namespace}/" in r.path]
    assert len(reached) == BUDGET
    assert sorted(codes) == [200] * BUDGET + [429] * (PODS - BUDGET)
    assert len(pair.direct.list_namespaced_pod(namespace).items) == PODS - BUDGET
    if pair.workers > 1:  # every worker of both replicas took part in this round
        wait_for_served(pair, before, PODS)
        after = {gw.url: served(gw) for gw in (pair.a, pair.b)}
        for url, counts in after.items():
            assert len(counts) == pair.workers
            assert all(n > was for n, was in zip(counts, before[url])), (before, after)


def served(gw: GatewayHandle) -> list[int]:
    return [count for _, count in gw.workers().values()]


def wait_for_served(pair: Pair, before: dict[str, list[int]], more: int) -> None:
    wait_until(lambda: sum(sum(served(gw)) - sum(before[gw.url]) for gw in (pair.a, pair.b)) >= more, 10)


def test_qps_limit_holds_across_replicas(pair: Pair) -> None:
    pair.upstream.clear_requests()
    token = pair.a.token("lee")  # a user of its own: its own bucket
    started = time.monotonic()
    codes = asyncio.run(_hammer(pair, "GET", ["/api/v1/namespaces/default/configmaps"] * 400, token))
    elapsed = time.monotonic() - started
    passed = sum(1 for r in pair.upstream.requests if r.method == "GET" and r.path.endswith("/configmaps")
                 and r.user is not None and r.user.username == "lee")
    assert passed == codes.count(200)
    # never more than the bucket allows in the time the run took (one token of slack for the clock edges)
    assert BURST <= passed <= BURST + QPS * elapsed + 1
    assert codes.count(429) == 400 - passed


@pytest.mark.kubectl
def test_redis_down_stops_deletes_with_503_reads_go_on_and_it_recovers(tmp_path: Path, kubectl_path: str) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    upstream = harness.start(tmp_path / "emulator")
    gw = start_gateway(tmp_path / "gw", upstream, limits=LIMITS, store={"redis_url": redis.url})
    try:
        kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "ada", "ada"))
        Pair(gw, gw, upstream).seed("shop", 3)
        assert 'pod "p000" deleted' in kubectl("delete", "pod", "p000", "-n", "shop").stdout
        redis.stop()
        refused = kubectl("delete", "pod", "p001", "-n", "shop", check=False)
        assert refused.returncode == 1
        assert "Error from server (ServiceUnavailable)" in refused.stderr
        assert "delete is refused while the gateway's state store is unavailable (delete budgets cannot be " \
               f"enforced): Redis at 127.0.0.1:{redis.port} did not answer" in refused.stderr
        listed = kubectl("get", "pods", "-n", "shop", "-o", "name").stdout.split()
        assert listed == ["pod/p001", "pod/p002"]
        redis.start()  # same address, no restart of the gateway
        assert 'pod "p001" deleted' in kubectl("delete", "pod", "p001", "-n", "shop").stdout
        deletes = [r.path for r in upstream.requests if r.method == "DELETE"]
        assert deletes == ["/api/v1/namespaces/shop/pods/p000", "/api/v1/namespaces/shop/pods/p001"]
        refusal = [e for e in gw.audit_events() if e.get("responseStatus", {}).get("code") == 503]
        assert len(refusal) == 1 and refusal[0]["annotations"]["kubegate.io/stage"] == "limits"
    finally:
        gw.stop()
        upstream.stop()
        redis.stop()


@pytest.mark.kubectl
def test_kubectl_waits_out_retry_after_and_succeeds(pair: Pair, kubectl_path: str, tmp_path: Path) -> None:
    """client-go honours Retry-After on 429: a burst of kubectl runs past the QPS limit all succeed."""
    kubeconfig = pair.a.kubeconfig(tmp_path / "kim", "kim")
    kubectl = Kubectl(kubectl_path, kubeconfig)
    kubectl("api-resources")  # discovery cached first: the burst below is only the limited lists
    runs = 3 * BURST
    procs = [kubectl.stream("get", "configmaps", "-n", "default", "-o", "name") for _ in range(runs)]
    for p in procs:
        p.proc.wait(timeout=120)
    codes = [p.proc.returncode for p in procs]
    for p in procs:
        p.stop()
    assert codes == [0] * runs
    lists = [e for e in pair.a.audit_events() + pair.b.audit_events()
             if e["user"]["username"] == "kim" and e["verb"] == "list"]
    refused = [e for e in lists if e.get("responseStatus", {}).get("code") == 429]
    assert refused, "the burst never reached the limit"
    assert len(lists) - len(refused) == runs  # each run's list passed exactly once in the end


def test_a_hung_redis_that_answers_again_serves_deletes_again_everywhere(pair: Pair) -> None:
    """Redis stopped (SIGSTOP) under both replicas (and their workers), then resumed: deletes are
    refused while it hangs, and once one passes, every one after it passes, on every replica and
    worker — recovery does not flap."""
    import requests

    assert pair.redis is not None and pair.redis.proc is not None
    names = pair.seed("flap", 20)
    token = pair.a.token("ada")

    def delete(n: int) -> int:
        gw = (pair.a, pair.b)[n % 2]
        with requests.Session() as http:  # a new connection each: spread over the workers
            return http.delete(f"{gw.url}/api/v1/namespaces/flap/pods/{names[n]}", verify=str(pair.a.ca_file),
                               headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code

    os.kill(pair.redis.proc.pid, signal.SIGSTOP)  # started by the fixture, stopped by its PID
    try:
        hung = [delete(n) for n in range(4)]
    finally:
        os.kill(pair.redis.proc.pid, signal.SIGCONT)
    assert hung == [503] * 4
    after = [delete(n) for n in range(4, 20)]
    first = after.index(200) if 200 in after else None
    assert first is not None, after
    assert after[first:] == [200] * (len(after) - first), after  # no refusal after the first success
