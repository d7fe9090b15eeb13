"""The throughput and latency suite, one command: `./dev bench` (or `.venv/bin/python -m bench`).

    python -m bench [--seconds 8] [--rounds 2] [--json bench-results.json] [--redis] [--workers 2,4] [--pin] [--kubectl-runs 15]
                    [--watches 1000] [--rss-requests 100000] [--exec-mb 1024] [--micro] [--quick]

Upstream: nginx (Debian) serving one small ConfigMap over TLS, fast enough that the proxies are
what is measured. Targets, each its own process, all in front of that one nginx:
  direct              nginx itself
  mitmproxy           a bare mitmproxy reverse proxy configured like kubegate (bench/plain_mitmproxy.py)
  mitmproxy hooks     the same with an addon that has kubegate's hooks and does nothing in them: the
                      engine's own cost of running an addon like kubegate's
  kubegate authn      kubegate with one allow-everything rule and no gates: the engine, authn, the
                      audit log (which every request writes)
  kubegate full       the starter policies and every gate (authz, freeze, rules, limits with the
                      per-user QPS lifted, audit to a file; webhooks off), memory store
  kubegate redis      the same with the store in a local redis-server (--redis)
  kubegate redis wN   the same as `serve --workers N` (--workers N,M: one target per N; Redis implied)
Then, through one gateway process in front of the emulator (bench/longrun.py): N concurrent
watches (first-event latency added over direct watches, RSS per watch), RSS over many requests,
RSS over a large `kubectl exec -i … -- cat` stream. The kubectl rows (bench/kubectl_wait.py): a
kubectl command's wall time with a warm and a cold discovery cache, direct, through bare mitmproxy
and through kubegate, in front of the emulator. `--micro`: the decision-core benchmarks
(bench/authz.py, bench/limits.py with the memory and Redis stores) and what a change adds, as
ratios to the request alone (bench/audit.py --write-ahead: the audit record written ahead and the
answer waiting for its completion; bench/blast_radius.py: the reads a held change's radius makes). `--quick`: wrk rows only.
Load: wrk (Debian), one thread, 1 and 16 keep-alive connections, and 16 clients opening a new TLS
connection per request (conn/s: what each kubectl process costs), `--seconds` per measurement,
rounds interleaved over the targets so noise spreads over all. Every figure is also given as a
ratio to bare mitmproxy measured in the same run; results go to a JSON file too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubegate import pki

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, Stack  # noqa: E402  (the benchmarks' shared set-up)

OBJECT = "/api/v1/namespaces/default/configmaps/bench"
NEW = 0  # the measurement with a new connection per request (its key among the connection counts)
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench", "namespace": "default",
                                                                   "resourceVersion": "1"}, "data": {"k": "v"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(stack: Stack) -> tuple[int, Path]:
    """nginx serving CONFIGMAP for every path over TLS; (port, its CA)."""
    work = stack.work / "nginx"
    (work / "logs").mkdir(parents=True)
    ca = pki.make_ca("bench-upstream-ca")
    ca.write(work / "ca.crt", work / "ca.key")
    pki.make_leaf(ca, "nginx", ["127.0.0.1"]).write(work / "tls.crt", work / "tls.key")
    (work / "configmap.json").write_text(json.dumps(CONFIGMAP))
    port = _free_port()
    # As root, nginx would run its worker as nobody, who cannot read the private bench directory.
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {work}/tls.crt;
    ssl_certificate_key {work}/tls.key;
    root {work};
    location / {{ default_type application/json; try_files /configmap.json =404; }}
  }}
}}
""")
    (work / "tmp").mkdir()
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([binary, "-c", str(work / "nginx.conf"), "-p", str(work), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=open(work / "logs" / "stderr.log", "wb"), text=True)
    stack.procs.append(proc)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return port, work / "ca.crt"
        time.sleep(0.05)
    raise SystemExit(f"nginx did not start: {(work / 'logs' / 'error.log').read_text()}")


# CPUs the load generator runs on (`--pin`); None: wherever the kernel puts it.
LOAD_CPUS: set[int] | None = None


def _family(pid: int) -> list[int]:
    """A process and its descendants (a supervisor's workers, nginx's worker), as /proc shows them now."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid] + [p for child in children for p in _family(int(child))]


def _threads(pid: int) -> list[int]:
    """Every thread of a process and of its descendants."""
    tids: list[int] = []
    for member in _family(pid):
        try:
            tids += [int(t) for t in os.listdir(f"/proc/{member}/task")]
        except OSError:
            pass  # ended meanwhile
    return tids


def pin_away(load_pids: list[int], proxy_pids: list[int], cpus: list[int]) -> str:
    """Put the load generator and the upstream side (nginx, Redis) on the last CPU and the proxies
    on the others, so that what is measured does not share cores with what measures it. Needs three
    CPUs at least; what was done, as a line for the report."""
    global LOAD_CPUS
    if len(cpus) < 3:
        return (f"--pin: {len(cpus)} CPUs, none to spare: wrk, nginx and redis-server share them with the "
                "proxies (their CPU is left out of each proxy's CPU per request)")
    LOAD_CPUS, rest = {cpus[-1]}, set(cpus[:-1])
    for pid, where in [(p, LOAD_CPUS) for p in load_pids] + [(p, rest) for p in proxy_pids]:
        for tid in _threads(pid):
            try:
                os.sched_setaffinity(tid, where)
            except OSError:
                pass  # a thread that ended meanwhile
    return f"pinned: wrk, nginx and redis-server on CPU {cpus[-1]}, the proxies on CPUs {sorted(rest)}"


def wrk(port: int, token: str, connections: int, seconds: float, *, close: bool = False) -> dict[str, float]:
    """wrk's rate and latencies; `close`: every request on a new TLS connection (`Connection: close`,
    which wrk answers by connecting again), as each kubectl process does."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
                          "-H", f"Authorization: Bearer {token}", *(["-H", "Connection: close"] if close else []),
                          f"https://127.0.0.1:{port}{OBJECT}"],
                         capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=(lambda: os.sched_setaffinity(0, LOAD_CPUS or set())) if LOAD_CPUS else None)
    text = out.stdout

    def ms(label: str) -> float:
        found = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not found:
            raise SystemExit(f"wrk printed no {label} latency:\n{text}{out.stderr}")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if not rps or errors:
        import urllib3

        sample = urllib3.PoolManager(cert_reqs="CERT_NONE").request(
            "GET", f"https://127.0.0.1:{port}{OBJECT}", headers={"Authorization": f"Bearer {token}"})
        raise SystemExit(f"a request answered {sample.status}: {sample.data[:300]!r}\n"
                         f"wrk against port {port}: {errors.group(0) if errors else 'no rate'}\n{text}{out.stderr}")
    served = re.search(r"(\d+) requests in", text)
    return {"rps": float(rps.group(1)), "p50_ms": ms("50%"), "p99_ms": ms("99%"),
            "requests": float(served.group(1)) if served else 0.0}


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its descendants (a supervisor's workers), so far."""
    total = 0.0
    for member in _family(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--json", default="bench-results.json", help="where the results go (default ./bench-results.json)")
    parser.add_argument("--redis", action="store_true", help="also kubegate with its store in a local redis-server")
    parser.add_argument("--watches", type=int, default=1000, help="concurrent watches through one worker (0: none)")
    parser.add_argument("--rss-requests", type=int, default=100_000, help="requests over which RSS is sampled (0: none)")
    parser.add_argument("--exec-mb", type=int, default=1024, help="MiB streamed through kubectl exec (0: none)")
    parser.add_argument("--micro", action="store_true", help="also the decision-core microbenchmarks and what a change "
                                                             "adds (write-ahead audit, blast radius)")
    parser.add_argument("--quick", action="store_true", help="the wrk and kubectl rows only")
    parser.add_argument("--kubectl-runs", type=int, default=15,
                        help="runs of each kubectl command per target for the kubectl rows (0: none; default 15)")
    parser.add_argument("--pin", action="store_true", help="wrk, nginx and redis-server on the last CPU, the "
                                                           "proxies on the others (3 CPUs or more)")
    parser.add_argument("--workers", default="", metavar="N[,M...]",
                        help="also kubegate with Redis as `serve --workers N` for each N (e.g. 2,4); implies --redis")
    args = parser.parse_args()
    missing = [tool for tool in ("nginx", "wrk") if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
    if missing:
        print(f"bench: {', '.join(missing)} missing: ./dev bench installs them (Debian nginx-light, wrk)", file=sys.stderr)
        return 2
    stack = Stack(Path(tempfile.mkdtemp(prefix="kubegate-bench-")))
    pinned = ""
    try:
        nginx_port, nginx_ca = start_nginx(stack)
        nginx_pid = stack.procs[-1].pid
        stack.upstream_url, stack.upstream_ca, stack.admin_token = f"https://127.0.0.1:{nginx_port}", nginx_ca, "bench"
        plain_port, plain_pid = stack.start_plain_mitmproxy()
        hooked_port, hooked_pid = stack.start_plain_mitmproxy(hooks=True)
        pids: dict[str, int] = {"mitmproxy": plain_pid, "mitmproxy hooks": hooked_pid}  # whose CPU each proxy target costs

        def gateway(name: str, **extra: Any) -> tuple[str, int, str]:
            port = stack.start_gateway(name.split()[-1], **extra)
            pids[name] = stack.gateway_pid
            return name, port, stack.token("bench", ["kubegate:viewers"])  # signed by that gateway's own key

        targets: list[tuple[str, int, str]] = [
            ("direct", nginx_port, "unused"), ("mitmproxy", plain_port, "unused"),
            ("mitmproxy hooks", hooked_port, "unused"),
            gateway("kubegate authn", **stack.open_policies()),
            gateway("kubegate full")]
        redis = None
        counts = [int(n) for n in args.workers.split(",") if n.strip()]
        if args.redis or counts:
            sys.path.insert(0, str(ROOT))
            from tests.redis_server import RedisServer

            redis = RedisServer(stack.work / "redis").start()
            targets.append(gateway("kubegate redis", store={"redis_url": redis.url}))
            for n in counts:
                name = f"kubegate redis w{n}"
                port = stack.start_gateway(f"w{n}", workers=n, store={"redis_url": redis.url,
                                                                      "key_prefix": f"w{n}:"})
                targets.append((name, port, stack.token("bench", ["kubegate:viewers"])))
                pids[name] = stack.gateway_pid
        if args.pin:
            load = [nginx_pid] + ([redis.proc.pid] if redis is not None and redis.proc is not None else [])
            pinned = pin_away(load, list(pids.values()), sorted(os.sched_getaffinity(0)))
            print(pinned, flush=True)
        # 1 and 16 keep-alive connections; NEW: 16 clients each making a new TLS connection per request.
        results: dict[str, dict[int, list[dict[str, float]]]] = {name: {1: [], 16: [], NEW: []}
                                                                for name, _, _ in targets}
        for _, port, token in targets:  # warm up: TLS, caches, lazy imports
            wrk(port, token, 4, 1)
        for _ in range(args.rounds):
            for connections in (1, 16, NEW):
                for name, port, token in targets:
                    used = cpu_seconds(pids[name]) if name in pids else 0.0
                    result = wrk(port, token, 16 if connections == NEW else connections, args.seconds,
                                 close=connections == NEW)
                    if name in pids:  # the proxy's own CPU (with its workers) per request served
                        result["cpu_ms_per_request"] = (cpu_seconds(pids[name]) - used) * 1000 / result["requests"]
                    results[name][connections].append(result)
        if redis is not None:
            redis.stop()
    finally:
        stack.stop()
    extra: dict[str, Any] = {"pinned": pinned} if pinned else {}
    if not args.quick and (args.watches or args.rss_requests or args.exec_mb):
        import longrun

        extra["longrun"] = longrun.run(args.watches, args.rss_requests, args.exec_mb)
    if args.kubectl_runs:
        import kubectl_wait

        extra["kubectl"] = kubectl_wait.run(args.kubectl_runs, pods=60)
    if args.micro and not args.quick:
        extra["micro"] = {" ".join([script, *more]): subprocess.run([sys.executable, str(ROOT / "bench" / script), *more],
                                                 capture_output=True, text=True, timeout=1800).stdout.splitlines()
                          for script, more in (("authz.py", []), ("limits.py", ["--kind", "budget"]),
                                               ("limits.py", ["--kind", "qps"]),
                                               # the costs a change adds, as ratios to the request alone
                                               ("audit.py", ["--write-ahead", "--requests", "300", "--rounds", "3"]),
                                               ("blast_radius.py", ["--rounds", "10"]))}
    return report(results, args, extra)


def report(results: dict[str, dict[int, list[dict[str, float]]]], args: argparse.Namespace,
           extra: dict[str, Any] | None = None) -> int:
    def med(name: str, connections: int, key: str) -> float:
        return statistics.median(r[key] for r in results[name][connections])
    rows = []
    for name in results:
        row: dict[str, Any] = {"target": name}
        for key, connections in (("rps@16", 16), ("rps@1", 1)):
            row[key] = med(name, connections, "rps")
            row[f"{key} x mitmproxy"] = row[key] / med("mitmproxy", connections, "rps")
        for key in ("p50_ms", "p99_ms"):
            row[f"{key}@1"] = med(name, 1, key)
        row["added p50@1 ms over direct"] = row["p50_ms@1"] - med("direct", 1, "p50_ms")
        row["new TLS conn/s"] = med(name, NEW, "rps")
        row["new TLS conn/s x mitmproxy"] = row["new TLS conn/s"] / med("mitmproxy", NEW, "rps")
        if "cpu_ms_per_request" in results[name][16][0]:
            row["cpu ms/request@16"] = med(name, 16, "cpu_ms_per_request")
        rows.append(row)
    plain_added = next(r for r in rows if r["target"] == "mitmproxy")["added p50@1 ms over direct"]
    for row in rows:
        row["added p50@1 x mitmproxy's"] = row["added p50@1 ms over direct"] / plain_added if plain_added else 0.0
    head = (f"{'target':<16}{'rps@16':>9}{'x mitm':>8}{'rps@1':>8}{'p50@1 ms':>10}{'p99@1 ms':>10}{'added p50':>11}"
            f"{'x mitm':>8}{'conn/s':>8}{'x mitm':>8}")
    print(head)
    for r in rows:
        print(f"{r['target']:<16}{r['rps@16']:>9.0f}{r['rps@16 x mitmproxy']:>8.2f}{r['rps@1']:>8.0f}"
              f"{r['p50_ms@1']:>10.3f}{r['p99_ms@1']:>10.3f}{r['added p50@1 ms over direct']:>11.3f}"
              f"{r['added p50@1 x mitmproxy\'s']:>8.2f}{r['new TLS conn/s']:>8.0f}{r['new TLS conn/s x mitmproxy']:>8.2f}")
    print("(conn/s: 16 clients, a new TLS connection for each request, as each kubectl process opens its own)")
    one = next((r for r in rows if r["target"] == "kubegate redis"), None)
    for r in rows:
        if one is not None and r["target"].startswith("kubegate redis w"):
            r["rps@16 x one worker"] = r["rps@16"] / one["rps@16"]
            print(f"{r['target']}: {r['rps@16 x one worker']:.2f}x the rps@16 of one worker (kubegate redis)")
    if pinned := (extra or {}).get("pinned"):
        print(pinned)
    costs = [f"{r['target']} {r['cpu ms/request@16']:.3f}" for r in rows if "cpu ms/request@16" in r]
    if costs:
        print("CPU per request at 16 connections (ms, the proxy's processes): " + ", ".join(costs))
    extra = extra or {}
    long = extra.get("longrun", {})
    if w := long.get("watches"):
        print(f"\n{w['watches']:.0f} watches through one worker: first event p50 {w['kubegate_first_event_p50_ms']:.1f} ms "
              f"(direct {w['direct_first_event_p50_ms']:.1f}, added {w['added_first_event_p50_ms']:.1f}), p99 "
              f"{w['kubegate_first_event_p99_ms']:.1f} ms (direct {w['direct_first_event_p99_ms']:.1f}); RSS "
              f"{w['rss_before_mib']:.0f} -> {w['rss_open_mib']:.0f} MiB, {w['rss_per_watch_kib']:.0f} KiB per watch")
    if r := long.get("requests_rss"):
        print(f"RSS over {r['requests']:,} requests: {r['rss_at_10pct_mib']:.0f} MiB at 10%, {r['rss_end_mib']:.0f} MiB "
              f"at the end ({r['growth_after_10pct']:.3f}x)")
    if e := long.get("exec_stream"):
        print(f"exec stream of {e['mib']} MiB in and out ({e['mib_per_s']:.1f} MiB/s): RSS {e['rss_before_mib']:.0f} "
              f"MiB before, {e['rss_max_mib']:.0f} at most, {e['rss_end_mib']:.0f} after")
    if kubectl := extra.get("kubectl"):
        import kubectl_wait

        kubectl_wait.print_rows(kubectl)
    for script, lines in extra.get("micro", {}).items():
        print(f"\n{script}:\n" + "\n".join(f"  {line}" for line in lines))
    Path(args.json).write_text(json.dumps({"seconds": args.seconds, "rounds": args.rounds, "rows": rows,
                                           "raw": results, **extra}, indent=2) + "\n")
    print(f"\n{args.rounds} rounds of {args.seconds:g}s per target and connection count; wrk -t1; results in {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
