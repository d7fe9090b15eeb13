"""What the end-to-end benchmarks share: an emulator and a `kubegate serve` in front of it, each in
its own process, started and ended by PID."""

from __future__ import annotations

import shutil
import signal
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubegate import pki
from kubegate.gateway.config import settings
from kubegate.gateway.identity import keys
from kubegate.gateway.identity.authn import TokenIssuer

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    """A process's resident memory now, MiB (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def spawn(args: list[str], marker: str, log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start a process (with ENV added to ours) and wait for the stdout line that starts with `marker`."""
    with open(log, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, **env} if env else None)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(marker):
            return proc, line.strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"{args[:3]} did not start: {log.read_text()[-2000:]}")


@dataclass
class Stack:
    work: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    upstream_url: str = ""
    upstream_ca: Path = Path()
    admin_token: str = ""
    gateway_port: int = 0
    gateway_pid: int = 0
    gateway_ca: Path = Path()
    issuer: TokenIssuer | None = None

    def start_emulator(self) -> None:
        emu, line = spawn([sys.executable, "-m", "kubegate.emulator", "--dir", str(self.work / "emu")],
                          "emulator listening on", self.work / "emu.log")
        self.procs.append(emu)
        self.upstream_url = line.split()[-1]
        self.upstream_ca = self.work / "emu" / "ca.crt"
        self.admin_token = yaml.safe_load((self.work / "emu" / "kubeconfig").read_text())["users"][0]["user"]["token"]

    def start_gateway(self, name: str = "gw", workers: int = 1, env: dict[str, str] | None = None, **extra: Any) -> int:
        """kubegate with the starter policies, every gate on; only the per-user and kubectl-listing
        QPS limits are lifted, since a benchmark is one user calling as fast as it can. `workers`: `serve --workers N` (N > 1
        needs a Redis store in `extra`). `extra`: more config keys. Its port."""
        gates = self.work / "gates"
        if not gates.exists():  # one copy for every gateway of the run
            shutil.copytree(ROOT / "policies" / "gates", gates)
            limits = (gates / "limits.yaml").read_text()
            lifted = limits.replace("qps: 50\n    burst: 100", "qps: 1000000\n    burst: 1000000")
            # kubectl's listing limit too: the kubectl rows list in a loop, and a refusal (429,
            # which kubectl retries after a second) would measure the gate, not the path.
            lifted = lifted.replace('user_agent: "kubectl/*"\n    verbs: [list]\n    per: [user]\n    qps: 5\n    burst: 10',
                                    'user_agent: "kubectl/*"\n    verbs: [list]\n    per: [user]\n    qps: 1000000\n    burst: 1000000')
            if lifted.count("qps: 1000000") != 2:
                raise SystemExit("bench: the starter per-user or kubectl-lists QPS limit changed; update bench/stack.py")
            (gates / "limits.yaml").write_text(lifted)
        config = self.work / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "listen": {"port": 0}, "metrics": {"port": -1}, "state_dir": str(self.work / name), **extra,
            "authz": {"policy_dir": str(ROOT / "policies" / "authz")}, "gates": {"policy_dir": str(gates)},
            "clusters": [{"name": "bench", "server": self.upstream_url, "ca_file": str(self.upstream_ca),
                          "token": self.admin_token}]}))
        gw, line = spawn([sys.executable, "-m", "kubegate", "serve", "-c", str(config), "--log-level", "warning",
                          "--workers", str(workers)], "kubegate serving on", self.work / f"{name}.log", env)
        self.procs.append(gw)
        self.gateway_port = int(line.split("https://127.0.0.1:")[1].split(",")[0])
        self.gateway_pid = gw.pid
        self.gateway_ca = self.work / name / "tls" / "ca.crt"
        cfg = settings.load(config)
        self.issuer = TokenIssuer(cfg.issuer, keys.signing_key_pem(cfg))
        return self.gateway_port

    def start_plain_mitmproxy(self, hooks: bool = False, http2: bool = False) -> tuple[int, int]:
        """bench/plain_mitmproxy.py in front of the stack's upstream (`hooks`: with an addon that has
        kubegate's hooks, empty; `http2`: HTTP/2 offered to clients); (its port, its pid). Its certificate's CA is proxy-ca.crt in the
        work directory."""
        bundle = self.work / "proxy-bundle.pem"
        if not bundle.exists():
            ca = pki.make_ca("bench-ca")
            leaf = pki.make_leaf(ca, "proxy", ["127.0.0.1"])
            ca.write(self.work / "proxy-ca.crt", self.work / "proxy-ca.key")
            bundle.write_bytes(leaf.cert_pem + leaf.key_pem)
        proc, line = spawn([sys.executable, str(ROOT / "bench" / "plain_mitmproxy.py"), self.upstream_url,
                            str(self.upstream_ca), str(bundle), *(["--hooks"] if hooks else []),
                            *(["--http2"] if http2 else [])],
                           "listening", self.work / f"{'hooks' if hooks else 'plain'}{'-h2' if http2 else ''}.log")
        self.procs.append(proc)
        return int(line.split()[-1]), proc.pid

    def open_policies(self) -> dict[str, Any]:
        """Config keys for a gateway that judges nothing: one allow-everything authorization rule
        (resources and non-resource URLs) and no gate policies; authentication and the audit stay."""
        open_authz, no_gates = self.work / "open-authz", self.work / "no-gates"
        if not open_authz.exists():
            open_authz.mkdir()
            shutil.copy(ROOT / "policies" / "authz" / "model.conf", open_authz / "model.conf")
            (open_authz / "all.csv").write_text("p, *, *:*, **, *, *, allow, everything\n"
                                                "p, *, *:, /*, *, *, allow, all-urls\n")
            no_gates.mkdir()
        return {"authz": {"policy_dir": str(open_authz)}, "gates": {"policy_dir": str(no_gates)}}

    def token(self, user: str, groups: list[str]) -> str:
        assert self.issuer is not None
        return self.issuer.issue(user, groups)

    def stop(self) -> None:
        for proc in self.procs:  # started here, ended by their PIDs
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(self.work, ignore_errors=True)
