"""`kubegate serve --workers N`: N processes on one port behind one supervisor.

What a user of the command sees: it refuses what cannot be shared, both workers take requests,
/readyz and /metrics speak for all of them, one audit log holds one unbroken chain, a worker that
dies is replaced, a rolling restart (SIGUSR2) and a stop (SIGTERM) finish what is in flight.
"""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from kubegate.emulator import harness
from kubegate.gateway.config import settings as gw_settings
from kubegate.gateway.engine import workers
from tests.conftest import GatewayHandle, start_gateway, wait_until, write_gateway_config
from tests.gateway.gates.test_change import ReviewServer
from tests.redis_server import RedisServer

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


class Client:
    """Requests on a new TLS connection each, so the kernel picks a worker for every one."""

    def __init__(self, gw: GatewayHandle) -> None:
        self.gw = gw
        self.tls = ssl.create_default_context(cafile=str(gw.ca_file))
        self.token = gw.token("ada")

    def call(self, method: str, path: str, body: dict[str, object] | None = None,
             timeout: float = 30) -> tuple[int, dict[str, object]]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.gw.port, context=self.tls, timeout=timeout)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()


def readyz(gw: GatewayHandle) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/readyz?verbose", timeout=10) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as e:
        return str(e.read().decode())


def metric(gw: GatewayHandle, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0].lower()
    except (OSError, IndexError):
        return "zombie"


def audit_verify(gw: GatewayHandle) -> subprocess.CompletedProcess[str]:
    path = gw.settings.audit_path
    files = sorted(str(p) for p in path.parent.glob(path.name + ".2*")) + [str(path)]
    return subprocess.run([sys.executable, "-m", "kubegate", "audit", "verify", *files],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """A gateway with two workers sharing a real redis-server."""
    tmp = tmp_path_factory.mktemp("workers")
    redis = RedisServer(tmp / "redis").start()
    upstream = harness.start(tmp / "emulator")
    gw = start_gateway(tmp / "gw", upstream, workers=2,
                       store={"redis_url": redis.url, "key_prefix": f"w{uuid.uuid4().hex[:6]}:"},
                       listen={"port": 0, "drain_seconds": 10})
    try:
        yield gw
    finally:
        gw.stop()
        upstream.stop()
        redis.stop()


def test_more_workers_than_one_need_a_shared_store(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    config = write_gateway_config(tmp_path, [{"name": "emu", "server": upstream.url,
                                              "ca_file": str(upstream.ca_file), "token": upstream.admin_token}])
    for asked, says in (("2", "--workers 2: store.redis_url is empty"),
                        ("0", "--workers: at least 1, got 0"),
                        ("many", "--workers: a number of processes or `auto`, got 'many'")):
        out = subprocess.run([sys.executable, "-m", "kubegate", "serve", "-c", str(config), "--workers", asked],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2
        assert f"kubegate: 1 problem(s) in {config}:\n  - {says}" in out.stderr
        assert "Traceback" not in out.stderr


def test_auto_is_one_per_core_with_redis_and_one_with_memory(tmp_path: Path) -> None:
    memory = gw_settings.Settings(base_dir=tmp_path)
    redis = gw_settings.Settings(base_dir=tmp_path, store=gw_settings.Store(redis_url="redis://127.0.0.1:1"))
    assert workers.worker_count("auto", memory) == (1, [])
    assert workers.worker_count("auto", redis) == (workers.available_cores(), [])
    assert workers.worker_count("3", redis) == (3, [])


def test_two_workers_share_the_port_the_audit_log_and_the_metrics(two: GatewayHandle) -> None:
    gw = two
    client = Client(gw)
    before = sum(served for _, served in gw.workers().values())
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: client.call("GET", CONFIGMAPS)[0], range(120)))
    assert codes == [200] * 120
    wait_until(lambda: sum(s for _, s in gw.workers().values()) - before == 120, 10)
    serving = gw.workers()
    assert sorted(serving) == [1, 2]
    assert all(served > before // 2 for _, served in serving.values())  # the kernel gave each worker some
    assert len({pid for pid, _ in serving.values()}) == 2
    # One /metrics for both: the requests counted once each, whichever worker served them.
    assert metric(gw, "kubegate_requests_total") >= 120
    # Stage timings, counted in plain numbers by each worker, reach its files within a second or so.
    wait_until(lambda: metric(gw, "kubegate_stage_duration_seconds_count") >= 120, 10)
    assert metric(gw, "kubegate_workers") == 2 and metric(gw, "kubegate_ready") == 1
    # One audit log, one chain, every request in it once.
    lists = [e for e in gw.audit_events() if e["verb"] == "list" and e["requestURI"] == CONFIGMAPS]
    assert len(lists) >= 120 and len({e["auditID"] for e in lists}) == len(lists)
    verified = audit_verify(gw)
    assert verified.returncode == 0, verified.stdout


def test_a_worker_that_dies_is_started_again(two: GatewayHandle) -> None:
    gw = two
    client = Client(gw)
    pids = {n: pid for n, (pid, _) in gw.workers().items()}
    restarts = metric(gw, "kubegate_worker_restarts_total")
    subprocess.run(["kill", "-KILL", str(pids[2])], check=True)
    # (What waited in the killed worker's accept queue is lost with it, as in any crash.)
    wait_until(lambda: not Path(f"/proc/{pids[2]}").exists() or "zombie" in _state(pids[2]), 10)
    assert [client.call("GET", CONFIGMAPS)[0] for _ in range(10)] == [200] * 10  # worker 1 serves meanwhile
    wait_until(lambda: 2 in gw.workers() and gw.workers()[2][0] != pids[2])
    assert gw.workers()[1][0] == pids[1]
    assert metric(gw, "kubegate_worker_restarts_total") == restarts + 1
    assert gw.log_file is not None
    assert f"worker 2 (pid {pids[2]}) ended unasked with code -9" in gw.log_file.read_text()


def test_a_rolling_restart_replaces_every_worker_and_drops_nothing(two: GatewayHandle) -> None:
    gw = two
    assert workers.accept_queues_migrate(), \
        "net.ipv4.tcp_migrate_req must be 1 for a rolling restart to drop nothing (./dev test sets it)"
    client = Client(gw)
    old = {pid for pid, _ in gw.workers().values()}
    codes: list[int] = []
    failures: list[str] = []
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            try:
                codes.append(client.call("GET", CONFIGMAPS)[0])
            except OSError as e:
                failures.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGUSR2)
        wait_until(lambda: len(gw.workers()) == 2 and not old & {p for p, _ in gw.workers().values()}, 60)
        time.sleep(0.5)
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert len(codes) > 50 and set(codes) == {200}
    assert metric(gw, 'kubegate_worker_restarts_total{reason="rolling"}') == 2


def test_a_stopping_gateway_finishes_the_requests_in_flight(tmp_path: Path, upstream: harness.RunningEmulator,
                                                            redis_server: RedisServer) -> None:
    """SIGTERM while a change waits on a slow risk webhook: the change is carried out and answered,
    then the gateway exits 0; the port takes no new connection after."""
    checker = ReviewServer(tmp_path)
    hook = (f"webhooks:\n  - name: slow\n    url: https://127.0.0.1:{checker.port}/review\n"
            f"    ca_file: {checker.ca_file}\n    timeout: 10s\n    match: {{namespaces: [\"wh-slow*\"]}}\n")
    gw = start_gateway(tmp_path / "gw", upstream, workers=2, gate_files={"webhooks.yaml": hook},
                       store={"redis_url": redis_server.url, "key_prefix": f"s{uuid.uuid4().hex[:6]}:"})
    try:
        namespace = f"wh-slow-{uuid.uuid4().hex[:6]}"
        client = Client(gw)
        assert client.call("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})[0] == 201
        answer: list[int] = []
        slow = threading.Thread(target=lambda: answer.append(client.call(
            "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "late"}})[0]))
        slow.start()
        wait_until(lambda: any(r["request"]["requestInfo"]["namespace"] == namespace
                               and r["request"]["requestInfo"]["resource"] == "configmaps" for r in checker.reviews), 10)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        slow.join(30)
        assert answer == [201]
        assert gw.proc.wait(30) == 0
        with pytest.raises(OSError):
            client.call("GET", CONFIGMAPS, timeout=5)
        created = [e for e in gw.audit_events() if e["verb"] == "create" and
                   e["requestURI"] == f"/api/v1/namespaces/{namespace}/configmaps"]
        assert [e["responseStatus"]["code"] for e in created] == [201]
    finally:
        gw.stop()
        checker.stop()
