"""`kubegate webshell -c FILE`: the webshell as a process of its own that knows the gateway only by
its URL and CA — terminals, the audit of what they do, and approvals work as with the webshell
`kubegate serve` starts, and the process holds none of the gateway's files."""

from __future__ import annotations

import json
import os
import subprocess as sp
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from kubegate.emulator import harness
from kubegate.pki import KeyPair, make_leaf
from tests.conftest import GatewayHandle, end_process, kubectl_binary, start_gateway
from tests.webshell.conftest import STARTER_RULES, WebshellHandle


@pytest.fixture(scope="module")
def gateway(upstream: harness.RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-alone"), upstream,
                       gate_files={"rules.yaml": STARTER_RULES.read_text()})
    yield gw
    gw.stop()


def _settings(gw: GatewayHandle, home: Path) -> Path:
    """The webshell's own settings: the gateway's URL and CA, its own certificate (signed, for the
    test's convenience, by the CA the test gateway made; the webshell never sees that CA's key)."""
    home.mkdir(parents=True, exist_ok=True)
    tls = gw.settings.state / "tls"
    ca = KeyPair((tls / "ca.crt").read_bytes(), (tls / "ca.key").read_bytes())
    make_leaf(ca, "webshell", ["127.0.0.1"]).write(home / "tls.crt", home / "tls.key")
    (home / "gateway-ca.crt").write_bytes(ca.cert_pem)
    path = home / "webshell.yaml"
    path.write_text(yaml.safe_dump({
        "listen": {"host": "127.0.0.1", "port": 0}, "tls": {"cert_file": "tls.crt", "key_file": "tls.key"},
        "gateway": {"url": gw.url, "ca_file": "gateway-ca.crt"}, "clusters": ["emu"],
        "kubectl": kubectl_binary(), "state_dir": "state", "idle_seconds": 60}))
    return path


@pytest.fixture(scope="module")
def alone(gateway: GatewayHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebshellHandle, sp.Popen[str]]]:
    home = tmp_path_factory.mktemp("webshell-alone")
    config = _settings(gateway, home)
    log = open(home / "webshell.log", "wb")
    proc = sp.Popen([sys.executable, "-m", "kubegate", "webshell", "-c", str(config), "--log-level", "warning"],
                    stdout=sp.PIPE, stderr=log, text=True, cwd=home)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("kubegate webshell on https://127.0.0.1:"), (line, (home / "webshell.log").read_text())
    handle = WebshellHandle(gateway, line.split(" on ", 1)[1].split(",", 1)[0])
    yield handle, proc
    handle.close()
    end_process(proc)
    log.close()


def test_a_webshell_of_its_own_runs_kubectl_as_the_user(alone: tuple[WebshellHandle, sp.Popen[str]]) -> None:
    handle, proc = alone
    handle.gw.upstream.clear_requests()
    shown = handle.login("ada").run(["kubectl auth whoami", "kubectl get configmaps -n default"])
    assert "ada" in shown.split("kubectl auth whoami", 1)[1]
    seen = [r for r in handle.gw.upstream.requests if r.path.endswith("/configmaps")]
    assert seen and all(r.user.username == "ada" and r.user.extra.get("kubegate.io/session") for r in seen)

    # Its own audit log, chained, with the terminal and its commands; the API requests are the gateway's.
    home = Path(proc.args[5]).parent  # type: ignore[index]
    log = home / "state" / "audit.jsonl"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "terminal-ended" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    text = log.read_text()
    assert '"kubegate.io/webshell-event":"command"' in text.replace(" ", "") and "kubectl auth whoami" in text
    verified = sp.run([sys.executable, "-m", "kubegate", "audit", "verify", str(log), "--recordings",
                       str(home / "state" / "recordings")], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The requests its commands made are in the gateway's log, found by the session.
    extra = seen[0].user.extra["kubegate.io/session"]
    session = extra if isinstance(extra, str) else extra[0]
    found = sp.run([sys.executable, "-m", "kubegate", "audit", "search", str(handle.gw.settings.audit_path),
                    "--session", session, "--resource", "configmaps", "-o", "json"],
                   capture_output=True, text=True, timeout=60)
    events = [json.loads(line) for line in found.stdout.splitlines()]
    assert events and all(e["user"]["username"] == "ada" for e in events), found.stdout + found.stderr


def test_it_holds_none_of_the_gateways_files(alone: tuple[WebshellHandle, sp.Popen[str]]) -> None:
    handle, proc = alone
    state = str(handle.gw.settings.state)
    fds = os.listdir(f"/proc/{proc.pid}/fd")
    targets = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in fds if os.path.exists(f"/proc/{proc.pid}/fd/{fd}")]
    assert not [t for t in targets if t.startswith(state)], targets
    settings = Path(proc.args[5]).read_text()  # type: ignore[index]
    assert state not in settings and "signing" not in settings


def test_approvals_work_from_a_webshell_of_its_own(alone: tuple[WebshellHandle, sp.Popen[str]], tmp_path: Path) -> None:
    handle, _ = alone
    emu = handle.gw.upstream
    kind = emu.emulator.registry.lookup("", "v1", "configmaps")
    emu.call(lambda: emu.emulator.store.create(kind, "default", {"metadata": {"name": "far"}, "data": {"k": "v"}}))
    dev = handle.login("dev", ("kubegate:cluster-admins",))
    shown = dev.run(["kubectl delete configmap far -n default", "\x03"], timeout=3)  # the ticket, then Ctrl-C
    assert "waiting for approval — ticket" in shown and "rule webshell-delete" in shown
    assert "gave up waiting; the ticket is withdrawn" in shown


@pytest.mark.parametrize(("change", "problem"), [
    ({"gateway": {"url": "http://127.0.0.1:1"}}, "gateway.url"),
    ({"clusters": []}, "clusters: name at least one cluster"),
    ({"sandbox": "chroot"}, "sandbox: 'chroot'; one of bwrap, none"),
    ({"tls": {"cert_file": "missing.crt", "key_file": "tls.key"}}, "tls.cert_file"),
    ({"signing_key_file": "x"}, "signing_key_file: unknown key"),
])
def test_a_broken_settings_file_is_named_with_every_problem(gateway: GatewayHandle, tmp_path: Path,
                                                            change: dict[str, object], problem: str) -> None:
    config = _settings(gateway, tmp_path)
    data = yaml.safe_load(config.read_text())
    data.update(change)
    config.write_text(yaml.safe_dump(data))
    out = sp.run([sys.executable, "-m", "kubegate", "webshell", "-c", str(config)], capture_output=True, text=True,
                 timeout=60)
    assert out.returncode == 2 and f"problem(s) in {config}" in out.stderr and problem in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
