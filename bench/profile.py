"""Where a kubegate process spends its CPU under load: py-spy samples it while wrk drives it.

    .venv/bin/python bench/profile.py [--seconds 10] [--target full|authn] [--top 25]

The same stack as `python -m bench` (nginx upstream, wrk with 16 connections); py-spy records the
gateway (with its native frames off) and the samples are summed by function (self time) and by
package, so the report says which code — mitmproxy's engine, kubegate's stages, the audit, the
TLS and asyncio machinery — takes the time. Needs py-spy (PyPI) and ptrace rights (root here).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, Stack  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--target", choices=("full", "authn"), default="full")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if not shutil.which("py-spy") and not (Path(sys.executable).parent / "py-spy").exists():
        print("bench/profile.py needs py-spy: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stack = Stack(Path(tempfile.mkdtemp(prefix="kubegate-profile-")))
    try:
        port, ca = suite.start_nginx(stack)
        stack.upstream_url, stack.upstream_ca, stack.admin_token = f"https://127.0.0.1:{port}", ca, "bench"
        extra = {}
        if args.target == "authn":
            open_authz = stack.work / "open-authz"
            open_authz.mkdir()
            shutil.copy(ROOT / "policies" / "authz" / "model.conf", open_authz / "model.conf")
            (open_authz / "all.csv").write_text("p, *, *:*, **, *, *, allow, everything\n")
            (stack.work / "no-gates").mkdir()
            extra = {"authz": {"policy_dir": str(open_authz)}, "gates": {"policy_dir": str(stack.work / "no-gates")}}
        gw_port = stack.start_gateway(args.target, **extra)
        token = stack.token("bench", ["kubegate:viewers"])
        suite.wrk(gw_port, token, 4, 1)  # warm up
        raw = stack.work / "profile.txt"
        load = threading.Thread(target=suite.wrk, args=(gw_port, token, 16, args.seconds + 2))
        load.start()
        subprocess.run([pyspy, "record", "--pid", str(stack.gateway_pid), "--duration", str(args.seconds),
                        "--format", "raw", "--output", str(raw), "--nonblocking"], check=True,
                       capture_output=True, text=True)
        load.join()
        by_function: collections.Counter[str] = collections.Counter()
        by_package: collections.Counter[str] = collections.Counter()
        total = 0
        for line in raw.read_text().splitlines():
            stack_text, _, count = line.rpartition(" ")
            frames = stack_text.split(";")
            n = int(count)
            total += n
            by_function[frames[-1]] += n
            by_package[_package(frames[-1])] += n
        print(f"{total} samples of kubegate ({args.target}) under wrk -c16 for {args.seconds}s; self time by package:")
        for name, n in by_package.most_common():
            print(f"  {100 * n / total:5.1f}%  {name}")
        print(f"\ntop {args.top} functions by self time:")
        for name, n in by_function.most_common(args.top):
            print(f"  {100 * n / total:5.1f}%  {name}")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
