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
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import ROOT, spawn  # noqa: E402  (bench/ scripts share their process helpers)

from kubegate.gateway.config import settings  # noqa: E402
from kubegate.gateway.identity import keys  # noqa: E402
from kubegate.gateway.identity.authn import TokenIssuer  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--big", type=int, default=20, help="requests with a 3 MiB reason")
    parser.add_argument("--rounds", type=int, default=3, help="floods, each by new users")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubegate-flood-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        emu, line = spawn([sys.executable, "-m", "kubegate.emulator", "--dir", str(work / "emu")],
                          "emulator listening on", work / "emu.log")
        procs.append(emu)
        upstream_url = line.split()[-1]
        admin = yaml.safe_load((work / "emu" / "kubeconfig").read_text())["users"][0]["user"]["token"]
        gates = work / "gates"
        shutil.copytree(ROOT / "policies" / "gates", gates)
        # The bystander calls as fast as it can: the starter per-user QPS limit is lifted for it.
        limits = (gates / "limits.yaml").read_text()
        (gates / "limits.yaml").write_text(limits.replace("qps: 50\n    burst: 100", "qps: 1000000\n    burst: 1000000"))
        config = work / "kubegate.yaml"
        config.write_text(yaml.safe_dump({
            "listen": {"port": 0}, "metrics": {"port": -1}, "state_dir": str(work / "gw"),
            "authz": {"policy_dir": str(ROOT / "policies" / "authz")}, "gates": {"policy_dir": str(gates)},
            "clusters": [{"name": "bench", "server": upstream_url, "ca_file": str(work / "emu" / "ca.crt"),
                          "token": admin}]}))
        gw, line = spawn([sys.executable, "-m", "kubegate", "serve", "-c", str(config), "--log-level", "warning"],
                         "kubegate serving on", work / "gw.log")
        procs.append(gw)
        port = int(line.split("https://127.0.0.1:")[1].split(",")[0])
        cfg = settings.load(config)
        issuer = TokenIssuer(cfg.issuer, keys.signing_key_pem(cfg))
        ctx = ssl.create_default_context(cafile=str(work / "gw" / "tls" / "ca.crt"))

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

        viewer = issuer.issue("bystander", ["kubegate:viewers"])
        bystander = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)

        def bystander_median(n: int = 300) -> float:
            samples = []
            for _ in range(n):
                t = time.perf_counter()
                assert call(viewer, "GET", "/api/v1/namespaces/default/configmaps", conn=bystander) == 200
                samples.append(time.perf_counter() - t)
            return statistics.median(samples)

        bystander_median(100)  # warm up
        before_ms, before_rss = bystander_median() * 1e3, rss_mib(gw.pid)
        spec = {"role": "developer", "cluster": "bench", "namespace": "shop", "durationSeconds": 600}
        big = json.dumps({**spec, "reason": "x" * (3 * 1024 * 1024)}).encode()
        print(f"before: RSS {before_rss:.1f} MiB, bystander GET median {before_ms:.2f} ms")
        for r in range(args.rounds):
            answers: collections.Counter[int] = collections.Counter()
            started = time.perf_counter()
            for u in range(args.users):
                token = issuer.issue(f"flooder-{r}-{u}", ["kubegate:viewers"])
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
                for i in range(args.per_user):
                    body = json.dumps({**spec, "reason": f"please {i}"}).encode()
                    answers[call(token, "POST", "/kubegate/v1/accessrequests", body, conn)] += 1
                conn.close()
            for i in range(args.big):
                answers[call(issuer.issue(f"big-{r}-{i}", []), "POST", "/kubegate/v1/accessrequests", big)] += 1
            seconds = time.perf_counter() - started
            after_ms, after_rss = bystander_median() * 1e3, rss_mib(gw.pid)
            print(f"flood {r + 1}: {sum(answers.values())} requests in {seconds:.1f}s ("
                  + ", ".join(f"{code}: {n}" for code, n in sorted(answers.items()))
                  + f"); RSS {after_rss:.1f} MiB ({after_rss / before_rss:.2f}x before); bystander GET median "
                  f"{after_ms:.2f} ms ({after_ms / before_ms:.2f}x before)")
        return 0
    finally:
        for proc in procs:  # started here, ended by their PIDs
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
