"""`kubegate serve --workers N`: N gateway processes on one port, and the supervisor that runs them.

Each worker is a whole gateway (`server.Gateway` with a `WorkerRole`) listening on the same port
with SO_REUSEPORT (mitm_patches patch 7): the kernel spreads new connections over the workers. A
worker keeps nothing the others need: budgets, QPS limits, breakers, grants, tickets and webshell
sessions are in the Redis store (so N > 1 needs `store.redis_url`: with the memory store every
worker would hold a budget of its own, N times the budget); the audit log is one file that every
worker appends to under a lock, continuing one hash chain (audit/sink.py, `shared`).

The supervisor does no request work. It
- reserves the port when `listen.port` is 0 (tests) and hands it to the workers;
- starts the workers and reports serving once every one listens;
- serves the one /metrics (every worker's series, aggregated: metrics.SupervisorMetrics), /healthz
  and /readyz (each worker's checks), and the webshell, so browser sessions outlive worker restarts;
- starts a worker that ends unasked again, after a pause that doubles (to 30 s) while it keeps failing;
- SIGHUP: passed on to the workers (the audit log reopened after an outside rotation);
- SIGUSR2: a rolling restart, one worker at a time: it stops taking connections, finishes what is in
  flight (`listen.drain_seconds`) and is replaced while the others serve (new code, new settings);
- SIGTERM / SIGINT: every worker drains so, then the supervisor exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from kubegate.audit.writer import BackgroundWriter

from ..clusters import upstreams
from ..config.settings import Settings
from ..identity import keys
from ..metrics import SupervisorMetrics
from .probes import serve_probes

log = logging.getLogger("kubegate.workers")
START_SECONDS = 60.0  # a worker that does not listen by then is taken as failed
MAX_PAUSE = 30.0
MIGRATE_KNOB = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def accept_queues_migrate() -> bool | None:
    """Whether the kernel hands the connections waiting in a closing listener's accept queue to
    another socket of its SO_REUSEPORT group (net.ipv4.tcp_migrate_req, Linux 5.14+); without it,
    connections that arrive in the instant a worker leaves are reset. None: unknown here."""
    try:
        return MIGRATE_KNOB.read_text().strip() == "1"
    except OSError:
        return None


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a
    container's `resources.limits.cpu`), which os.cpu_count() does not see."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def worker_count(requested: str, settings: Settings) -> tuple[int, list[str]]:
    """How many workers `--workers REQUESTED` means with these settings, and what refuses it.
    `auto`: one per available core with a Redis store, one with the memory store."""
    shared = bool(settings.store.redis_url)
    if requested == "auto":
        return (available_cores() if shared else 1), []
    try:
        count = int(requested)
    except ValueError:
        return 0, [f"--workers: a number of processes or `auto`, got {requested!r}"]
    if count < 1:
        return 0, [f"--workers: at least 1, got {count}"]
    if count > 1 and not shared:
        return count, [f"--workers {count}: store.redis_url is empty. With the memory store each worker would keep "
                       "its own delete budgets, QPS limits, breakers, grants and approval tickets (every budget "
                       f"{count} times over); set store.redis_url (the workers share it), or serve with --workers 1"]
    return count, []


@dataclass
class Slot:
    number: int  # 1..N: the worker's place (its audit spool, its status file)
    proc: "subprocess.Popen[bytes] | None" = None
    failures: int = 0  # exits in a row without having served
    restart_at: float = 0.0
    leaving: bool = False  # asked to stop (a rolling restart or shutdown): its exit is expected
    served: bool = False  # the current process has listened


class Supervisor:
    def __init__(self, settings: Settings, config: str, count: int, log_args: list[str]) -> None:
        self.settings, self.config, self.count, self.log_args = settings, config, count, log_args
        settings.state.mkdir(parents=True, exist_ok=True)
        # Created once here, not by N workers at the same moment.
        self.tls = keys.serving_tls(settings)
        keys.signing_key_pem(settings)
        self.run_dir = Path(tempfile.mkdtemp(prefix="workers-", dir=settings.state))
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir()
        self.metrics = SupervisorMetrics(self.metrics_dir)
        self.metrics.workers_wanted.set(count)
        self.slots = [Slot(n) for n in range(1, count + 1)]
        self.port = settings.listen.port
        self.metrics_port = 0
        self.webshell: Any = None
        self._reserved: socket.socket | None = None
        self._stop = asyncio.Event()
        self._rolling: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._sink: BackgroundWriter | None = None
        self.migrate = accept_queues_migrate()

    # -- workers ---------------------------------------------------------------------------------

    def _reserve_port(self) -> None:
        """listen.port 0: pick a port and hold it (bound with SO_REUSEPORT, never listening, so it
        takes no connections) for every worker, and every worker started later, to share."""
        host = self.settings.listen.host
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, self.port))
        self.port = sock.getsockname()[1]
        self._reserved = sock

    def _spawn(self, slot: Slot) -> None:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "kubegate", "serve", "--config", self.config, *self.log_args,
             "--worker-slot", str(slot.number), "--worker-port", str(self.port), "--worker-dir", str(self.run_dir)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        slot.served, slot.leaving, slot.restart_at = False, False, 0.0
        log.info("worker %d started (pid %d)", slot.number, slot.proc.pid)

    def status(self, slot: Slot) -> dict[str, Any] | None:
        """What the slot's current process last reported (workers write it every quarter second)."""
        if slot.proc is None:
            return None
        try:
            status = json.loads((self.run_dir / f"worker-{slot.number}.json").read_text())
        except (OSError, ValueError):
            return None
        return status if isinstance(status, dict) and status.get("pid") == slot.proc.pid else None

    async def _started(self, slot: Slot) -> bool:
        """Wait until the slot's process listens (its first status report) or ends."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if slot.proc is None or slot.proc.poll() is not None:
                return False
            if self.status(slot) is not None:
                slot.served, slot.failures = True, 0
                return True
            await asyncio.sleep(0.05)
        return False

    async def _ended(self, proc: "subprocess.Popen[bytes]", timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            log.error("worker pid %d did not stop within %gs; killed", proc.pid, timeout)
            proc.kill()
            proc.wait(10)
        self.metrics.worker_gone(proc.pid)
        return proc.returncode

    async def _stop_worker(self, slot: Slot) -> None:
        if slot.proc is None:
            return
        slot.leaving = True
        if slot.proc.poll() is None:
            slot.proc.send_signal(signal.SIGTERM)
        await self._ended(slot.proc, self.settings.listen.drain_seconds + 15)

    def _watch(self) -> None:
        """Start again what ended unasked; count the workers that serve."""
        now = time.monotonic()
        ready = 0
        for slot in self.slots:
            if slot.leaving or slot.proc is None:
                continue
            code = slot.proc.poll()
            if code is not None and slot.restart_at == 0.0:
                self.metrics.worker_gone(slot.proc.pid)
                slot.failures += 1
                pause = min(MAX_PAUSE, 2.0 ** (slot.failures - 1)) if not slot.served or slot.failures > 1 else 0.0
                log.error("worker %d (pid %d) ended unasked with code %s; starting it again in %gs",
                          slot.number, slot.proc.pid, code, pause)
                slot.restart_at = now + pause
            if code is not None and now >= slot.restart_at:
                slot.restart_at = 0.0
                self.metrics.restarts.labels("exited").inc()
                self._spawn(slot)
                continue
            status = self.status(slot) if code is None else None
            if status is not None and not slot.served:
                slot.served, slot.failures = True, 0
            ready += bool(status and status.get("ready"))
        self.metrics.workers.set(ready)

    async def _rolling_restart(self) -> None:
        log.info("rolling restart of %d workers", len(self.slots))
        for slot in self.slots:
            if self._stop.is_set():
                return
            await self._stop_worker(slot)
            if self._stop.is_set():
                return
            self._spawn(slot)
            self.metrics.restarts.labels("rolling").inc()
            if not await self._started(slot):
                log.error("worker %d did not start again; the rolling restart stops here", slot.number)
                return
        log.info("rolling restart done")

    def _roll(self) -> None:
        if self._rolling is not None and not self._rolling.done():
            log.warning("a rolling restart is under way already")
            return
        self._rolling = asyncio.get_running_loop().create_task(self._rolling_restart(), name="rolling-restart")

    def _pass_on(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(sig)

    # -- probes, metrics, webshell -----------------------------------------------------------------

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready while some worker serves and none fails a check (a worker being replaced is not a failure)."""
        lines: list[str] = []
        serving, failing = 0, False
        notes: list[str] = []
        for slot in self.slots:
            st = self.status(slot)
            pid = slot.proc.pid if slot.proc is not None else 0
            if slot.proc is None or slot.proc.poll() is not None:
                lines.append(f"[!]worker {slot.number}: not running ({'being replaced' if slot.leaving else 'restarting'})")
            elif st is None:
                lines.append(f"[!]worker {slot.number} (pid {pid}): starting")
            elif st.get("draining"):
                lines.append(f"[!]worker {slot.number} (pid {pid}): stopping, {st.get('in_flight', 0)} in flight")
            elif st.get("ready"):
                serving += 1
                lines.append(f"[+]worker {slot.number} (pid {pid}) ok: {st.get('served', 0)} requests served, "
                             f"{st.get('in_flight', 0)} in flight")
            else:
                failing = True
                failed = [c[3:] for c in st.get("checks", []) if str(c).startswith("[-]")]
                lines.append(f"[-]worker {slot.number} (pid {pid}) failed: {'; '.join(failed)}")
            notes += [c for c in (st or {}).get("checks", []) if str(c).startswith("[!]") and c not in notes]
        if self.webshell is not None:
            notes += self.webshell.health()
        if self.migrate is False:
            notes.append("[!]net.ipv4.tcp_migrate_req is 0: a worker leaving (rolling restart) may reset "
                         "connections it had not accepted yet")
        return serving > 0 and not failing, lines + notes

    async def _start_probes(self) -> None:
        self._runner = await serve_probes(self.settings.metrics.host, self.settings.metrics.port,
                                          self.metrics.exposition, self.readiness)
        self.metrics_port = self._runner.addresses[0][1]

    async def _start_webshell(self) -> None:
        from .server import audit_log, start_webshell

        s = self.settings
        self._sink = BackgroundWriter(audit_log(s, shared=True))
        self.webshell = await start_webshell(s, self.tls, self.port, upstreams.build(s), self._sink.write)

    # -- the whole run ---------------------------------------------------------------------------------

    async def run(self, on_started: Callable[["Supervisor"], None]) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._pass_on, signal.SIGHUP)
        loop.add_signal_handler(signal.SIGUSR2, self._roll)
        if self.migrate is False:
            log.warning("net.ipv4.tcp_migrate_req is 0: when a worker leaves (rolling restart, SIGUSR2), connections "
                        "waiting in its accept queue are reset instead of moving to another worker; set it to 1 "
                        "(sysctl, or the pod's securityContext.sysctls)")
        try:
            if self.port == 0:
                self._reserve_port()
            for slot in self.slots:
                self._spawn(slot)
            started = await asyncio.gather(*(self._started(slot) for slot in self.slots))
            if not all(started):
                failed = next(s for s, ok in zip(self.slots, started) if not ok)
                code = failed.proc.poll() if failed.proc is not None else None
                log.error("worker %d did not start%s; stopping", failed.number,
                          f" (exit code {code})" if code is not None else f" within {START_SECONDS:g}s")
                return code if code else 1
            if self.settings.metrics.port >= 0:
                await self._start_probes()
            if self.settings.webshell.enabled:
                await self._start_webshell()
            on_started(self)
            log.info("%d workers serving on port %d: pids %s", len(self.slots), self.port,
                     ", ".join(str(s.proc.pid) for s in self.slots if s.proc is not None))
            while not self._stop.is_set():
                self._watch()
                try:
                    await asyncio.wait_for(self._stop.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
            return 0
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._stop.set()
        if self._rolling is not None:
            await asyncio.gather(self._rolling, return_exceptions=True)
        await asyncio.gather(*(self._stop_worker(slot) for slot in self.slots))
        if self.webshell is not None:
            await self.webshell.stop()
        if self._sink is not None:
            self._sink.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._reserved is not None:
            self._reserved.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
