"""Defence in depth: with the argument check switched off (a test-only switch), a terminal's kubectl
can be given any option at all, and still nothing of the webshell's host is in its reach — not the
gateway's signing key, TLS keys, settings, state, audit log or recordings, not another session's
kubeconfig, not the gateway's environment, command line or open files. The sandbox alone holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from kubegate.emulator import harness
from kubegate.gateway.engine.server import NO_ARGUMENT_CHECK
from tests.conftest import kubectl_binary, start_gateway
from tests.webshell.conftest import WebshellHandle

MARKER = "gateway-environment-marker-5f1e"


@pytest.fixture(scope="module")
def unchecked(upstream: harness.RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebshellHandle]:
    state = tmp_path_factory.mktemp("contained")
    saved = dict(os.environ)
    os.environ.update({NO_ARGUMENT_CHECK: "1", "KUBEGATE_SECRET_MARKER": MARKER})
    try:
        gw = start_gateway(state, upstream, webshell={"enabled": True, "port": 0, "kubectl": kubectl_binary()})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    handle = WebshellHandle(gw, gw.webshell_url)
    yield handle
    handle.close()
    gw.stop()


def _gateway_files(handle: WebshellHandle) -> list[Path]:
    """Every file the gateway holds: its state directory (keys, certificates, audit log, recordings,
    the webshell's session directories), its settings file."""
    state = handle.gw.settings.state
    found = [p for p in state.rglob("*") if p.is_file() and p.stat().st_size > 0]
    return sorted(set(found))


def test_with_the_argument_check_off_nothing_of_the_gateway_is_readable(unchecked: WebshellHandle) -> None:
    other = unchecked.login("olivia")
    other.run(["kubectl version --client"])  # another user's session: its kubeconfig holds her token
    eve = unchecked.login("eve", ("kubegate:viewers",))
    probe = eve.run(["kubectl create configmap probe --from-literal=a=b --dry-run=client -o name"])
    assert "configmap/probe" in probe  # the switch is on: kubectl runs, unjudged

    files = _gateway_files(unchecked)
    names = {p.name for p in files}
    assert {"token-signing.key", "ca.key", "serving.key", "kubegate.yaml", "audit.jsonl"} <= names, names
    assert any(p.name == "kubeconfig" and "sessions" in p.parts for p in files)  # olivia's
    assert unchecked.gw.proc is not None
    pid = unchecked.gw.proc.pid
    proc = [f"/proc/{pid}/environ", f"/proc/{pid}/cmdline", f"/proc/{pid}/root/etc/hostname",
            *(f"/proc/{pid}/fd/{fd}" for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int)[:12])]
    own = ["/proc/1/environ", "/proc/self/environ", "/proc/1/cmdline"]  # the sandbox has no /proc at all

    lines = []
    for path in [*map(str, files), *proc, *own]:
        lines.append(f"kubectl create configmap leak --from-file=x={path} --dry-run=client -o yaml")
    signing = next(str(p) for p in files if p.name == "token-signing.key")
    settings = next(str(p) for p in files if p.name == "kubegate.yaml")
    lines += [f"kubectl apply -f {signing} --dry-run=client -o yaml",
              f"kubectl get pods -o go-template-file={signing}",
              f"kubectl get pods -o jsonpath-file={signing}",
              f"kubectl kustomize {Path(signing).parent}",
              f"kubectl --kubeconfig={settings} get pods",
              f"kubectl create secret tls leak --cert={signing} --key={signing} --dry-run=client -o yaml",
              f"kubectl debug pod/x --custom={signing} --dry-run=client -o yaml",
              f"kubectl --kuberc={settings} get pods",
              f"kubectl cp {signing} default/nowhere:/tmp/x"]
    shown = eve.run(lines, timeout=60)

    secrets = [p.read_bytes() for p in files if p.suffix in (".key", ".pem")]
    assert secrets
    for secret in secrets:
        body = secret.decode().strip().splitlines()[1]  # a line of the key itself, not its PEM header
        assert body not in shown
    assert MARKER not in shown
    for line in lines[:len(files) + len(proc) + len(own)]:
        answer = shown.split(line, 1)[1].split("$ ", 1)[0]
        assert "no such file or directory" in answer or "not a directory" in answer, (line, answer)
