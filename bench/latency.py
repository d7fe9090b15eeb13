"""Added latency at one connection: direct to the upstream vs bare mitmproxy vs kubegate.

    .venv/bin/python bench/latency.py [--requests 3000] [--rounds 6]

Every server runs in its own process; the client sends sequential GETs of one small object over
one keep-alive HTTPS connection per target, rounds interleaved (direct, mitmproxy, kubegate,
direct, ...) so that noise on a shared machine spreads over all three. Figures are reported as
ratios to the direct baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import Stack  # noqa: E402  (the benchmarks' shared set-up)
OBJECT = "/api/v1/namespaces/default/configmaps/bench"


class Target:
    def __init__(self, name: str, port: int, ca: Path, token: str) -> None:
        self.name, self.token = name, token
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca)))
        self.samples: list[float] = []

    def get(self) -> float:
        start = time.perf_counter()
        self.conn.request("GET", OBJECT, headers={"Authorization": f"Bearer {self.token}"})
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            raise SystemExit(f"{self.name}: {resp.status} {body[:300]!r}")
        return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per target (default 3000)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    args = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="kubegate-bench-")))
    work = stack.work
    try:
        stack.start_emulator()
        upstream_url, emu_ca, admin = stack.upstream_url, stack.upstream_ca, stack.admin_token
        conn = http.client.HTTPSConnection("127.0.0.1", int(upstream_url.rsplit(":", 1)[1]),
                                           context=ssl.create_default_context(cafile=str(emu_ca)))
        conn.request("POST", "/api/v1/namespaces/default/configmaps",
                     body=json.dumps({"metadata": {"name": "bench"}, "data": {"k": "v"}}),
                     headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
        assert conn.getresponse().status == 201

        plain_port, _ = stack.start_plain_mitmproxy()
        stack.start_gateway()
        gw_port = stack.gateway_port
        user_token = stack.token("bench", ["kubegate:viewers"])

        targets = [Target("direct", int(upstream_url.rsplit(":", 1)[1]), emu_ca, admin),
                   Target("mitmproxy", plain_port, work / "proxy-ca.crt", admin),
                   Target("kubegate", gw_port, stack.gateway_ca, user_token)]
        for t in targets:  # warm up: TLS handshake, caches, lazy imports
            for _ in range(200):
                t.get()
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            for t in targets:
                t.samples += [t.get() for _ in range(per_round)]

        base = statistics.median(targets[0].samples)
        print(f"{'target':<10} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'x direct':>9} {'added ms':>9}")
        for t in targets:
            s = sorted(t.samples)
            med = statistics.median(s)
            print(f"{t.name:<10} {med * 1e3:>10.3f} {s[int(len(s) * .9)] * 1e3:>8.3f} {s[int(len(s) * .99)] * 1e3:>8.3f}"
                  f" {med / base:>9.2f} {(med - base) * 1e3:>9.3f}")
        gw_med, plain_med = statistics.median(targets[2].samples), statistics.median(targets[1].samples)
        print(f"\nkubegate adds {(gw_med - plain_med) * 1e3:.3f} ms over bare mitmproxy "
              f"({gw_med / plain_med:.2f}x), {(gw_med - base) * 1e3:.3f} ms over direct; "
              f"{len(targets[0].samples)} requests per target in {args.rounds} rounds")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
