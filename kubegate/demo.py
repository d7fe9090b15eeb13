"""`kubegate demo`: kubegate in front of an emulated cluster, ready for kubectl in one command."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path

import yaml

from kubegate import starter
from kubegate.emulator import harness
from kubegate.gateway.identity import keys
from kubegate.gateway.identity import kubeconfig
from kubegate.gateway.config import settings
from kubegate.gateway.engine.server import Gateway


def seed(upstream: harness.RunningEmulator) -> None:
    """A small shop to look at: two namespaces, deployments and the pods they would run."""
    emu = upstream.emulator
    reg = emu.registry

    def create(plural: str, group: str, ns: str, obj: dict[str, object]) -> None:
        rt = reg.lookup(group, "v1", plural)
        assert rt is not None
        emu.store.create(rt, ns, obj)

    for ns in ("shop", "payments"):
        create("namespaces", "", "", {"metadata": {"name": ns, "labels": {"team": ns}}})
    for ns, app, image, replicas in (("shop", "web", "nginx:1.27", 3), ("shop", "cart", "cart:2.4", 2),
                                     ("payments", "ledger", "ledger:7.1", 2)):
        labels = {"app": app}
        create("deployments", "apps", ns, {"metadata": {"name": app, "labels": labels}, "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": app, "image": image}]}}}})
        for i in range(replicas):
            create("pods", "", ns, {"metadata": {"name": f"{app}-7d9c{i}x", "labels": labels},
                                    "spec": {"containers": [{"name": app, "image": image}]}})


POLICY_DIR = starter.POLICIES / "authz"
GATES_DIR = starter.POLICIES / "gates"


def _command(name: str) -> str:
    """How to run NAME from here: the checkout's .venv when there is one, else from PATH."""
    local = Path(".venv/bin") / name
    return str(local) if local.exists() else name


def write_config(state: Path, upstream: harness.RunningEmulator, port: int) -> Path:
    config = {
        "authz": {"policy_dir": str(POLICY_DIR)},
        "gates": {"policy_dir": str(GATES_DIR)},
        "listen": {"host": "127.0.0.1", "port": port},
        "metrics": {"host": "127.0.0.1", "port": 0},
        "state_dir": str(state / "gateway"),
        "clusters": [{"name": "demo", "server": upstream.url, "ca_file": str(upstream.ca_file),
                      "token": upstream.gateway_token}],
    }
    path = state / "kubegate.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def run(args: argparse.Namespace) -> int:
    if args.port and _taken(args.port):
        print(f"kubegate demo: port {args.port} on 127.0.0.1 is taken (another demo still running?): stop what holds "
              "it, or give --port 0 for any free port", file=sys.stderr)
        return 1
    state = Path(args.dir or "state/demo").resolve()
    state.mkdir(parents=True, exist_ok=True)
    upstream = harness.start(state / "emulator")
    upstream.call(lambda: seed(upstream))
    config_path = write_config(state, upstream, args.port)
    cfg = settings.load(config_path)

    def started(gateway: Gateway) -> None:
        cfg.listen.port = gateway.port  # kubeconfigs point at the port actually bound
        written = yaml.safe_load(config_path.read_text())
        written["public_url"] = cfg.url
        config_path.write_text(yaml.safe_dump(written, sort_keys=False))
        token = gateway.authenticator.own.issue("demo-admin", ["kubegate:cluster-admins"], ttl_seconds=8 * 3600)
        kc = state / "kubeconfig"
        kc.write_text(kubeconfig.render(cfg, keys.serving_tls(cfg).ca_file.read_text(), token,
                                        user="demo-admin", cluster=None))
        print(f"emulated cluster : {upstream.url} (its kubeconfig: {upstream.kubeconfig(state / 'emulator-admin.kubeconfig')})")
        print(f"kubegate         : https://127.0.0.1:{gateway.port}  (settings: {config_path})")
        print(f"metrics          : http://127.0.0.1:{gateway.metrics_port}/metrics")
        print(f"audit log        : {cfg.audit_path}")
        kubectl, kubegate = _command("kubectl"), _command("kubegate")
        print(f"\nready. In another terminal:\n\n  export KUBECONFIG={kc}\n  {kubectl} get pods -A\n"
              f"  {kubectl} auth whoami\n\nMore users: {kubegate} kubeconfig -c {config_path} "
              "--user alice --group kubegate:viewers\n(alice may read, but `kubectl delete` is Forbidden; policies: "
              f"{POLICY_DIR})\n\nRisk gates ({GATES_DIR}):\n"
              f"  {kubectl} -n payments scale deployment ledger --replicas=0   # needs a second person's approval\n"
              f"  {kubegate} approvals list --kubeconfig {kc}\n"
              f"  {kubegate} freeze status --kubeconfig {kc}\n"
              f"  {kubegate} breaker list --kubeconfig {kc}\n"
              "Ctrl-C stops the demo.", flush=True)

    async def main() -> None:
        await Gateway(cfg).serve_until_signalled(started)

    try:
        asyncio.run(main())
    except RuntimeError as e:  # the port was taken between the check and the listen
        print(f"kubegate demo: {e}; give --port 0 for any free port", file=sys.stderr)
        return 1
    finally:
        upstream.stop()
    return 0
