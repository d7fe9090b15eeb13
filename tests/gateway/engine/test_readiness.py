"""Honest readiness: /readyz fails while no cluster answers the gateway, names a refused gateway
credential, and reports (without failing) a refused policy reload; ?verbose shows each check."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, emulator_cluster, start_gateway


def readyz(gw: GatewayHandle, verbose: bool = True) -> tuple[int, str]:
    url = f"http://127.0.0.1:{gw.metrics_port}/readyz" + ("?verbose" if verbose else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_reachable_cluster_is_ready(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        code, text = readyz(gw)
        assert code == 200 and "[+]clusters ok" in text and "[+]cluster emu ok" in text
        assert text.rstrip().endswith("readyz check passed")
    finally:
        gw.stop()


def test_a_refused_gateway_credential_is_not_ready_and_named(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    wrong = emulator_cluster(upstream, token="not-the-gateways-token")
    gw = start_gateway(tmp_path / "gw", upstream, clusters=[wrong])
    try:
        code, text = readyz(gw)
        assert code == 503
        assert "[-]cluster emu: the gateway's credential was refused" in text
        assert readyz(gw, verbose=False) == (503, "not ready")
        assert "cluster emu does not answer the gateway: the gateway's credential was refused" in \
            (gw.log_file.read_text() if gw.log_file else "")
    finally:
        gw.stop()


def test_a_refused_reload_is_reported_while_the_last_good_policy_serves(tmp_path: Path,
                                                                         upstream: harness.RunningEmulator) -> None:
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        rules = gw.settings.state / "gates" / "rules.yaml"
        rules.write_text("rules:\n  - id: r\n    outcome: deny\n    outcome: annotate\n")
        deadline = time.monotonic() + 15
        while "[!]gate policy" not in (text := readyz(gw)[1]):
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        code, text = readyz(gw)
        assert code == 200 and 'duplicate key "outcome"' in text
    finally:
        gw.stop()


def test_users_hear_that_the_gateways_credential_was_refused(tmp_path: Path, upstream: harness.RunningEmulator,
                                                            kubectl_path: str) -> None:
    from tests.conftest import Kubectl

    wrong = emulator_cluster(upstream, token="not-the-gateways-token")
    gw = start_gateway(tmp_path / "gw", upstream, clusters=[wrong])
    try:
        kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "alice"))
        out = kubectl("get", "pods", check=False)
        assert out.returncode == 1
        assert "ServiceUnavailable" in out.stderr and "refused the gateway's credential" in out.stderr
        assert "You must be logged in" not in out.stderr
        assert 'cluster emu refused the gateway\'s credential' in (gw.log_file.read_text() if gw.log_file else "")
    finally:
        gw.stop()
