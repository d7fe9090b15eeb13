"""A flood of access requests against one gateway: refusals, the gateway's memory, a bystander's latency.

    .venv/bin/python bench/flood.py [--users 200] [--per-user 10] [--big 20]

Many signed-in users each file access requests as fast as one connection allows (valid ones,
then ones past their limit), plus some 3 MiB ones; meanwhile nothing else runs. Reported: how
the requests were answered (201, 429, 413...), the gateway's resident memory before and after
(/proc/PID/status VmRSS), and a bystander viewer's median GET latency before and after the
flood, as a ratio to itself before. Bounded state means RSS stays flat and the ratio near 1.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import Stack, rss_mib  # noqa: E402  (the benchmarks' shared set-up)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--big", type=int, default=20, help="requests with a 3 MiB reason")
    parser.add_argument("--rounds", type=int, default=3, help="floods, each by new users")
    args = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="kubegate-flood-")))
    try:
        stack.start_emulator()
        stack.start_gateway()
        port, gw_pid = stack.gateway_port, stack.gateway_pid
        ctx = ssl.create_default_context(cafile=str(stack.gateway_ca))

        def call(token: str, method: str, path: str, body: bytes | None = None,
                 conn: http.client.HTTPSConnection | None = None) -> int:
            own = conn or http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            try:
                own.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                              "Content-Type": "application/json"})
                resp = own.getresponse()
                resp.read()
                return resp.status
            except (ConnectionError, http.client.HTTPException):
                return -1
            finally:
                if conn is None:
                    own.close()

        viewer = stack.token("bystander", ["kubegate:viewers"])
        bystander = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)

        def bystander_median(n: int = 300) -> float:
            samples = []
            for _ in range(n):
                t = time.perf_counter()
                assert call(viewer, "GET", "/api/v1/namespaces/default/configmaps", conn=bystander) == 200
                samples.append(time.perf_counter() - t)
            return statistics.median(samples)

        bystander_median(100)  # warm up
        before_ms, before_rss = bystander_median() * 1e3, rss_mib(gw_pid)
        spec = {"role": "developer", "cluster": "bench", "namespace": "shop", "durationSeconds": 600}
        big = json.dumps({**spec, "reason": "x" * (3 * 1024 * 1024)}).encode()
        print(f"before: RSS {before_rss:.1f} MiB, bystander GET median {before_ms:.2f} ms")
        for r in range(args.rounds):
            answers: collections.Counter[int] = collections.Counter()
            started = time.perf_counter()
            for u in range(args.users):
                token = stack.token(f"flooder-{r}-{u}", ["kubegate:viewers"])
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
                for i in range(args.per_user):
                    body = json.dumps({**spec, "reason": f"please {i}"}).encode()
                    answers[call(token, "POST", "/kubegate/v1/accessrequests", body, conn)] += 1
                conn.close()
            for i in range(args.big):
                answers[call(stack.token(f"big-{r}-{i}", []), "POST", "/kubegate/v1/accessrequests", big)] += 1
            seconds = time.perf_counter() - started
            after_ms, after_rss = bystander_median() * 1e3, rss_mib(gw_pid)
            print(f"flood {r + 1}: {sum(answers.values())} requests in {seconds:.1f}s ("
                  + ", ".join(f"{code}: {n}" for code, n in sorted(answers.items()))
                  + f"); RSS {after_rss:.1f} MiB ({after_rss / before_rss:.2f}x before); bystander GET median "
                  f"{after_ms:.2f} ms ({after_ms / before_ms:.2f}x before)")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
