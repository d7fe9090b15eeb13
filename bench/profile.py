"""Where a kubegate process spends its CPU under load: py-spy samples it while wrk drives it.

    .venv/bin/python bench/profile.py [--seconds 10] [--target full|authn|mitmproxy|hooks] [--rate 250] [--new-connections]
                                      [--top 25] [--diff /tmp/kubegate-profile-mitmproxy.json]

The same stack as `python -m bench` (nginx upstream, wrk with 16 connections); py-spy records the
gateway (with its native frames off) and the samples are summed by function (self time) and by
package, so the report says which code — mitmproxy's engine, kubegate's stages, the audit, the
TLS and asyncio machinery — takes the time. Needs py-spy (PyPI) and ptrace rights (root here).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import Stack  # noqa: E402


_suite = importlib.util.spec_from_file_location("bench_suite", Path(__file__).resolve().parent / "__main__.py")
assert _suite is not None and _suite.loader is not None
suite = importlib.util.module_from_spec(_suite)
_suite.loader.exec_module(suite)


def _package(frame: str) -> str:
    """A sampled frame `function (path:line)` as the package it belongs to."""
    path = "/" + frame.rsplit("(", 1)[-1]  # py-spy names files relative to their sys.path entry
    for marker, name in (("/mitmproxy/", "mitmproxy"), ("/gateway/", "kubegate gateway"), ("/audit/", "kubegate audit"),
                         ("/kubegate/", "kubegate"), ("/asyncio/", "asyncio"), ("/ssl.py", "ssl"),
                         ("/OpenSSL/", "pyOpenSSL"), ("/cryptography/", "cryptography"), ("/jwt/", "pyjwt"),
                         ("/prometheus_client/", "prometheus_client"), ("/casbin/", "casbin"),
                         ("/h11/", "h11"), ("/wsproto/", "wsproto"), ("/aiohttp/", "aiohttp"),
                         ("/threading.py", "threads (the audit writer waiting)"), ("/multidict/", "multidict")):
        if marker in path:
            return name
    return "other (stdlib, interpreter)"


# Frames where a thread waits rather than works: samples ending in them are not CPU.
_WAITING = ("Condition.wait (threading.py", "EpollSelector.select (selectors.py", "Thread._wait_for_tstate_lock")
_LOOPS = ("BaseEventLoop._run_once (asyncio/base_events.py", "Thread._bootstrap_inner (threading.py")
_OURS = ("gateway/", "audit/", "kubegate/", "webshell/")


def _ours(frame: str) -> bool:
    path = frame.rsplit("(", 1)[-1]
    if "mitm_patches.py" in path:
        return False  # wrappers around the engine's own functions: what they call is the engine's work
    return any(path.startswith(marker) or f"/{marker}" in path for marker in _OURS)


def _name(frame: str) -> str:
    """`Class.function (path:line)` without the line: one name per function."""
    head, _, where = frame.rpartition(" (")
    return f"{head} ({where.rsplit(':', 1)[0]})"


def _stage(frames: list[str]) -> str:
    """Which pipeline stage a sample is in (the frame called by pipeline._run), if any."""
    for outer, inner in zip(frames, frames[1:]):
        if outer.startswith("_run (gateway/pipeline.py") or outer.startswith("_run (kubegate/gateway/pipeline.py"):
            return _name(inner)
    return ""


def analyse(raw: Path, top: int, label: str, rate: int, requests: float) -> dict[str, float]:
    """Print where the samples fall; `requests` served while sampling turns them into µs per request.
    Returns self time by function, µs per request (for --diff)."""
    by_function: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    entry: collections.Counter[str] = collections.Counter()  # kubegate's outermost frame, inclusive
    stages: collections.Counter[str] = collections.Counter()
    busy = idle = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # py-spy now and then writes a torn line when a frame changes as it reads it
        frames = [f for f in stack_text.split(";") if f.strip()]
        n = int(count)
        if not frames or frames[-1].startswith(_WAITING):
            idle += n
            continue
        busy += n
        by_function[_name(frames[-1])] += n
        by_package[_package(frames[-1])] += n
        # The process starts in kubegate's own main; what counts is where the event loop (or a
        # thread) called into kubegate: the first frame of ours below the loop's or thread's frame.
        loop_at = max((i for i, f in enumerate(frames) if f.startswith(_LOOPS)), default=0)
        first = next((f for f in frames[loop_at:] if _ours(f)), None)
        entry[_name(first) if first else "(the engine: no kubegate frame on the stack)"] += n
        if stage := _stage(frames):
            stages[stage] += n
    per_request = 1e6 / rate / requests if requests else 0.0  # µs of CPU one sample stands for, per request

    def show(counter: collections.Counter[str], limit: int | None) -> None:
        for name, n in counter.most_common(limit):
            print(f"  {100 * n / busy:5.1f}%  {n * per_request:7.1f} µs  {name}")
    print(f"{busy} busy samples of {label} ({idle} more waiting, left out); {requests:,.0f} requests served "
          f"while sampling: {busy * per_request:.0f} µs of CPU per request\n\nself time by package (share, µs/request):")
    show(by_package, None)
    print("\ninclusive time by kubegate's outermost frame (what the loop or a thread called of ours, with all "
          "it called):")
    show(entry, top)
    if stages:
        print("\ninclusive time by pipeline stage:")
        show(stages, None)
    print(f"\ntop {top} functions by self time:")
    show(by_function, top)
    return {name: n * per_request for name, n in by_function.items()}


def diff(ours: dict[str, float], base: dict[str, float], top: int) -> None:
    """Functions by how much more self time per request they take here than in the baseline."""
    more = sorted(((ours.get(k, 0.0) - base.get(k, 0.0), k) for k in set(ours) | set(base)), reverse=True)
    print(f"\nmore µs per request than the baseline ({sum(ours.values()):.0f} against {sum(base.values()):.0f} "
          "in all), by function:")
    for delta, name in more[:top]:
        print(f"  {delta:+7.1f} µs  ({ours.get(name, 0.0):6.1f} against {base.get(name, 0.0):6.1f})  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--target", choices=("full", "authn", "mitmproxy", "hooks"), default="full",
                        help="kubegate full or authn (as in python -m bench), bare mitmproxy, or mitmproxy with "
                             "kubegate's hooks doing nothing")
    parser.add_argument("--rate", type=int, default=250, help="samples per second (default 250)")
    parser.add_argument("--new-connections", action="store_true",
                        help="a new TLS connection per request (wrk with Connection: close), as kubectl processes make")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--diff", metavar="BASE.json", help="also compare with the functions of an earlier run")
    parser.add_argument("--raw", metavar="FILE.txt", help="analyse samples kept by an earlier run instead "
                                                          "(needs --requests)")
    parser.add_argument("--requests", type=float, default=0.0, help="requests served while FILE.txt was sampled")
    args = parser.parse_args()
    if args.raw:
        functions = analyse(Path(args.raw), args.top, args.raw, args.rate, args.requests)
        if args.diff:
            diff(functions, json.loads(Path(args.diff).read_text()), args.top)
        return 0
    if not shutil.which("py-spy") and not (Path(sys.executable).parent / "py-spy").exists():
        print("bench/profile.py needs py-spy: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stack = Stack(Path(tempfile.mkdtemp(prefix="kubegate-profile-")))
    try:
        port, ca = suite.start_nginx(stack)
        stack.upstream_url, stack.upstream_ca, stack.admin_token = f"https://127.0.0.1:{port}", ca, "bench"
        if args.target in ("mitmproxy", "hooks"):
            target_port, pid = stack.start_plain_mitmproxy(hooks=args.target == "hooks")
            token = "unused"
        else:
            target_port = stack.start_gateway(args.target, **(stack.open_policies() if args.target == "authn" else {}))
            pid, token = stack.gateway_pid, stack.token("bench", ["kubegate:viewers"])
        suite.wrk(target_port, token, 4, 1)  # warm up
        raw = stack.work / "profile.txt"
        loaded: dict[str, float] = {}
        load = threading.Thread(target=lambda: loaded.update(suite.wrk(target_port, token, 16, args.seconds + 2,
                                                                       close=args.new_connections)))
        load.start()
        subprocess.run([pyspy, "record", "--pid", str(pid), "--duration", str(args.seconds),
                        "--rate", str(args.rate), "--format", "raw", "--output", str(raw), "--nonblocking",
                        # Only the thread holding the GIL: the audit writer waiting for the GIL
                        # after a write would otherwise count as busy in that write.
                        "--gil"],
                       check=True, capture_output=True, text=True)
        load.join()
        kept = Path(tempfile.gettempdir()) / f"kubegate-profile-{args.target}"
        shutil.copy(raw, kept.with_suffix(".txt"))
        requests = loaded.get("rps", 0.0) * args.seconds  # served while py-spy sampled
        functions = analyse(raw, args.top, f"{args.target} under wrk -c16{' (a new connection per request)' if args.new_connections else ''} for {args.seconds}s", args.rate, requests)
        kept.with_suffix(".json").write_text(json.dumps(functions, indent=0))
        if args.diff:
            diff(functions, json.loads(Path(args.diff).read_text()), args.top)
        print(f"\n(samples kept in {kept}.txt, self time per function in {kept}.json for --diff)")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
