"""Limiter checks per second: the state store's atomic take, memory and Redis, on one client core.

    .venv/bin/python bench/limits.py [--checks 200000] [--redis-checks 40000]

A check is one atomic take, as the limits gate makes them: a delete takes from a four-window
budget (1m/5m/1h/24h) guarded by its breaker, the heaviest check; every request takes from its
QPS bucket (`--kind qps`). Keys spread over 1,000 users so buckets are not all hot. Redis runs as a real
redis-server started here on a free loopback port (stopped by its PID at the end); its CPU is
its own process, the figure is the gateway side. Three Redis figures:

- sequential: one take at a time, a round trip each (a gateway with one request in flight);
- concurrent: 64 takes in flight, as a busy gateway issues them (pool of 64 connections);
- pipelined: takes sent in batches of 64 in one Redis pipeline (EVALSHA), one round trip per batch.

The baseline in the same run is a Redis PING at the same concurrency: what any Redis call costs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kubegate.gateway.state.store import BreakerSpec, Bucket, MemoryStore, StateStore
from kubegate.gateway.state.redis_store import RedisStore

WINDOWS = [(60, 10**9), (300, 10**9), (3600, 10**9), (86400, 10**9)]


def budget_check(i: int) -> tuple[list[Bucket], BreakerSpec | None]:
    scope = f"pod-deletes/cluster=hz-1/user=user-{i % 1000}"
    return [Bucket(f"budget/{scope}/{w}", limit, limit / w, f"{w}s") for w, limit in WINDOWS], \
        BreakerSpec(scope, 0, "bench")


def qps_check(i: int) -> tuple[list[Bucket], BreakerSpec | None]:
    return [Bucket(f"qps/per-user/user=user-{i % 1000}", 10**9, 10**6, "qps")], None


PLANS: list[tuple[list[Bucket], BreakerSpec | None]] = []


async def run_sequential(store: StateStore, n: int) -> float:
    started = time.perf_counter()
    now = time.time()
    for i in range(n):
        buckets, breaker = PLANS[i % 1000]
        result = await store.take(buckets, 1, now, breaker)
        assert result.allowed
    return n / (time.perf_counter() - started)


async def run_concurrent(store: StateStore, n: int, inflight: int = 64) -> float:
    now = time.time()
    per = n // inflight

    async def worker(w: int) -> None:
        for i in range(per):
            buckets, breaker = PLANS[(w * per + i) % 1000]
            assert (await store.take(buckets, 1, now, breaker)).allowed

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(inflight)))
    return per * inflight / (time.perf_counter() - started)


async def run_pipelined(store: RedisStore, n: int, batch: int = 64) -> float:
    now = time.time()
    started = time.perf_counter()
    done = 0
    while done < n:
        requests = [(*PLANS[(done + j) % 1000], 1.0) for j in range(batch)]
        results = await store.take_many(requests, now)
        assert all(r.allowed for r in results)
        done += batch
    return done / (time.perf_counter() - started)


async def ping_rate(store: RedisStore, n: int, inflight: int) -> float:
    per = n // inflight

    async def worker() -> None:
        for _ in range(per):
            await store.ping()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return per * inflight / (time.perf_counter() - started)


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (./dev test installs it)")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


async def measured(run: "asyncio.Future[float] | object") -> tuple[float, float]:
    """(checks per wall second, checks per second of this process's CPU): Redis has a core of
    its own in production; here it shares two cores with this client, so both figures are shown."""
    cpu = time.process_time()
    wall = time.perf_counter()
    rate = await run  # type: ignore[misc]
    checks = rate * (time.perf_counter() - wall)
    return rate, checks / max(1e-9, time.process_time() - cpu)


async def main(args: argparse.Namespace) -> None:
    PLANS.extend((budget_check if args.kind == "budget" else qps_check)(i) for i in range(1000))
    print(f"checks: {args.kind} ({len(PLANS[0][0])} bucket(s){', with breaker' if PLANS[0][1] else ''})")
    memory = MemoryStore()
    await run_sequential(memory, 10_000)  # warm-up
    mem = await run_sequential(memory, args.checks)
    print(f"memory     sequential : {mem:10,.0f} checks/s")

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            redis = RedisStore(url, timeout_seconds=2.0)
            await run_sequential(redis, 2_000)
            ping1, ping1_cpu = await measured(ping_rate(redis, args.redis_checks, 1))
            seq, seq_cpu = await measured(run_sequential(redis, args.redis_checks))
            ping64, ping64_cpu = await measured(ping_rate(redis, args.redis_checks, 64))
            conc, conc_cpu = await measured(run_concurrent(redis, args.redis_checks))
            piped, piped_cpu = await measured(run_pipelined(redis, args.redis_checks))
            await redis.close()
        finally:
            proc.kill()  # started here, ended by its PID
            proc.wait(10)
    print("                          per wall second      per client CPU second")
    print(f"redis PING sequential : {ping1:10,.0f} /s         {ping1_cpu:10,.0f} /s   (baseline)")
    print(f"redis      sequential : {seq:10,.0f} checks/s  {seq_cpu:10,.0f} checks/s  ({seq / ping1:.2f}x PING)")
    print(f"redis PING 64 inflight: {ping64:10,.0f} /s         {ping64_cpu:10,.0f} /s   (baseline)")
    print(f"redis      64 inflight: {conc:10,.0f} checks/s  {conc_cpu:10,.0f} checks/s  ({conc / ping64:.2f}x PING)")
    print(f"redis      pipelined  : {piped:10,.0f} checks/s  {piped_cpu:10,.0f} checks/s  (batches of 64)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--redis-checks", type=int, default=40_000)
    parser.add_argument("--kind", choices=["budget", "qps"], default="budget")
    asyncio.run(main(parser.parse_args()))
