"""The emergency brake: pulled on one replica, the first change after the call returns is held on
the other (whose two workers read the shared store); reads go on; a break-glass ticket passes one
change through; releasing it restores changes. Real kubectl, real redis-server, the CLI."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import requests

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, start_gateway, start_replicas, unique


class Pair:
    def __init__(self, a: GatewayHandle, b: GatewayHandle, upstream: harness.RunningEmulator, tmp: Path,
                 kubectl_path: str) -> None:
        self.a, self.b, self.upstream, self.tmp, self.kubectl_path = a, b, upstream, tmp, kubectl_path
        self.direct = Kubectl(kubectl_path, upstream.kubeconfig(tmp / "direct"))

    def kubectl(self, gw: GatewayHandle, user: str, *groups: str) -> Kubectl:
        # Both replicas serve the first one's certificate: one CA for every kubeconfig.
        path = self.tmp / f"{user}-{gw.port}"
        harness.write_kubeconfig(path, gw.url, self.a.ca_file.read_text(), gw.token(user, groups), user=user)
        return Kubectl(self.kubectl_path, path)

    def brake(self, gw: GatewayHandle, user: str, groups: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
        path = self.tmp / f"{user}-cli-{gw.port}"
        harness.write_kubeconfig(path, gw.url, self.a.ca_file.read_text(), gw.token(user, groups), user=user)
        return subprocess.run([sys.executable, "-m", "kubegate", "brake", *args, "--kubeconfig", str(path)],
                              capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, kubectl_path: str) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("brake")
    with contextlib.ExitStack() as started:  # whatever started is stopped, even when a later start fails
        upstream = harness.start(tmp / "emulator")
        started.callback(upstream.stop)
        _, a, b = start_replicas(started, tmp, upstream, "bk")
        yield Pair(a, b, upstream, tmp, kubectl_path)


SRE = ("kubegate:sre",)
ADMIN = ("kubegate:cluster-admins",)


def test_a_brake_pulled_on_one_replica_holds_the_next_change_on_the_other(pair: Pair) -> None:
    ns = unique("braked")
    pair.direct("create", "namespace", ns)
    for i in range(4):
        pair.direct("create", "configmap", f"c{i}", "-n", ns)
    sam_b = pair.kubectl(pair.b, "sam", *SRE)
    pulled = pair.brake(pair.a, "sam", SRE, "on", "--namespace", ns, "--reason", "INC-77: payments double-charging")
    assert pulled.returncode == 0, pulled.stderr
    brake_id = pulled.stdout.split()[1]
    # The first change after the call returned, on the other replica (either of its workers): held.
    for i in range(2):
        held = sam_b("delete", "configmap", f"c{i}", "-n", ns, check=False)
        assert held.returncode == 1
        assert f"the emergency brake {brake_id} is on for cluster *, namespace {ns}" in held.stderr
        assert "INC-77: payments double-charging" in held.stderr and "break-glass" in held.stderr
    assert len(pair.direct.json("get", "configmaps", "-n", ns)["items"]) >= 4  # nothing deleted
    assert "c0" in sam_b("get", "configmap", "c0", "-n", ns).stdout  # reads go on
    assert pair.kubectl(pair.b, "sam", *SRE)("create", "configmap", "elsewhere", "-n", "default").returncode == 0
    status = pair.brake(pair.b, "vic", ("kubegate:viewers",), "status")
    assert brake_id in status.stdout and "INC-77" in status.stdout and "note:" not in status.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{pair.b.metrics_port}/metrics", timeout=10) as r:
        assert "kubegate_brakes_active 1.0" in r.read().decode()

    # Break-glass: an admin approves the one change that must go through.
    ticket = held.stderr.split("Approval ticket ")[1].split()[0]
    approve = subprocess.run([sys.executable, "-m", "kubegate", "approvals", "approve", ticket, "--kubeconfig",
                              str(pair.kubectl(pair.a, "ada", *ADMIN).kubeconfig)], capture_output=True, text=True,
                             timeout=60)
    assert approve.returncode == 0, approve.stderr
    assert 'configmap "c1" deleted' in sam_b("delete", "configmap", "c1", "-n", ns).stdout
    assert sam_b("delete", "configmap", "c2", "-n", ns, check=False).returncode == 1  # once

    refused = pair.brake(pair.b, "sam", SRE, "off", brake_id)
    assert refused.returncode == 1 and "may not release the emergency brake" in refused.stderr
    released = pair.brake(pair.b, "ada", ADMIN, "off", "--namespace", ns)
    assert released.returncode == 0 and f"brake {brake_id}" in released.stdout, released.stderr
    assert 'configmap "c2" deleted' in sam_b("delete", "configmap", "c2", "-n", ns).stdout  # the first after: passes
    steps = [(e["annotations"]["kubegate.io/brake-event"], e["user"]["username"]) for e in pair.a.audit_events()
             + pair.b.audit_events() if e["annotations"].get("kubegate.io/brake-event")]
    assert sorted(steps) == [("pulled", "sam"), ("released", "ada")]


def test_who_may_pull_a_brake_is_policy_and_a_reason_is_required(pair: Pair) -> None:
    denied = pair.brake(pair.a, "dan", ("team-shop",), "on", "--reason", "x")
    assert denied.returncode == 1 and 'user "dan" may not pull the emergency brake' in denied.stderr
    answer = requests.post(f"{pair.a.url}/kubegate/v1/brakes", json={"reason": " ", "ttlSeconds": 60},
                           headers={"Authorization": f"Bearer {pair.a.token('sam', SRE)}"},
                           verify=str(pair.a.ca_file), timeout=10)
    assert answer.status_code == 400 and "needs a reason" in answer.json()["message"]


def test_with_the_memory_store_the_status_says_one_replica(upstream: harness.RunningEmulator, tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        answer = requests.get(f"{gw.url}/kubegate/v1/brakes", headers={"Authorization": f"Bearer {gw.token('vic')}"},
                              verify=str(gw.ca_file), timeout=10).json()
        assert answer["shared"] is False and "this replica only" in answer["note"]
    finally:
        gw.stop()
