"""Alert-aware gating with a real Alertmanager (alerts posted through its API v2) and real kubectl:
a firing alert for the cluster holds changes to it and is named; another cluster's alert does
not; resolving it lets changes pass; a stopped Alertmanager is each gate's failure policy."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from kubegate.emulator import harness
from kubegate.gateway.gates import health_policy
from tests.alertmanager import Alertmanager
from tests.conftest import GatewayHandle, Kubectl, start_gateway, unique


def _health(url: str) -> str:
    return f"""
alertmanagers:
  - {{name: monitoring, url: "{url}", timeout: 1s, cache: 0s}}
gates:
  - name: critical-alerts
    description: a cluster on fire takes no changes
    alertmanager: monitoring
    matchers: ['severity="critical"', 'cluster="{{cluster}}"']
    outcome: deny
    on_unreachable: Fail
    match: {{namespaces: ["strict-*"]}}
  - name: paging-alerts
    alertmanager: monitoring
    matchers: ['severity="page"', 'cluster="{{cluster}}"']
    outcome: break-glass
    on_unreachable: Ignore
    match: {{namespaces: ["lenient-*"]}}
"""


class Env:
    def __init__(self, gw: GatewayHandle, am: Alertmanager, upstream: harness.RunningEmulator, tmp: Path,
                 kubectl_path: str) -> None:
        self.gw, self.am, self.upstream = gw, am, upstream
        self.ada = Kubectl(kubectl_path, gw.kubeconfig(tmp / "ada", "ada"))
        self.direct = Kubectl(kubectl_path, upstream.kubeconfig(tmp / "direct"))

    def namespace(self, prefix: str) -> str:
        ns = unique(prefix)
        self.direct("create", "namespace", ns)
        return ns

    def metric(self, gate: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.gw.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return next(line for line in text.splitlines()
                    if line.startswith(f'kubegate_alert_gate_firing{{cluster="emu",gate="{gate}"}}'))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, upstream: harness.RunningEmulator, kubectl_path: str) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("health")
    am = Alertmanager(tmp / "alertmanager").start()
    gw = start_gateway(tmp / "gw", upstream, gate_files={"health.yaml": _health(am.url)})
    try:
        yield Env(gw, am, upstream, tmp, kubectl_path)
    finally:
        gw.stop()
        am.stop()


def _starts_at(am: Alertmanager, name: str) -> str:
    with urllib.request.urlopen(f"{am.url}/api/v2/alerts?filter=alertname%3D%22{name}%22", timeout=5) as r:
        (alert,) = json.loads(r.read())
    return str(alert["startsAt"])


def test_a_firing_alert_refuses_changes_to_its_cluster_until_it_resolves(env: Env) -> None:
    ns = env.namespace("strict")
    env.am.fire("EtcdDown", {"severity": "critical", "cluster": "elsewhere"})  # another cluster's fire
    assert env.ada("create", "configmap", "a", "-n", ns).returncode == 0
    env.am.fire("HighErrorRate", {"severity": "critical", "cluster": "emu"})
    refused = env.ada("create", "configmap", "b", "-n", ns, check=False)
    assert refused.returncode == 1
    assert f"alert gate critical-alerts: 1 alert firing in cluster emu: HighErrorRate (since " \
           f"{_starts_at(env.am, 'HighErrorRate')})" in refused.stderr
    assert "EtcdDown" not in refused.stderr
    assert "configmap/a" in env.ada("get", "configmap", "a", "-n", ns, "-o", "name").stdout  # reads go on
    assert env.metric("critical-alerts").endswith(" 1.0")
    env.am.resolve("HighErrorRate", {"severity": "critical", "cluster": "emu"})
    assert env.ada("create", "configmap", "b", "-n", ns).returncode == 0
    assert env.metric("critical-alerts").endswith(" 0.0")


def test_a_break_glass_gate_opens_a_ticket_naming_the_alert(env: Env) -> None:
    ns = env.namespace("lenient")
    env.am.fire("PaymentsLatency", {"severity": "page", "cluster": "emu"})
    try:
        held = env.ada("create", "configmap", "c", "-n", ns, check=False)
        assert "needs break-glass approval" in held.stderr and "PaymentsLatency (since" in held.stderr
        assert "Approval ticket" in held.stderr
    finally:
        env.am.resolve("PaymentsLatency", {"severity": "page", "cluster": "emu"})


def test_a_stopped_alertmanager_is_each_gates_failure_policy(env: Env) -> None:
    strict, lenient = env.namespace("strict"), env.namespace("lenient")
    env.am.stop()
    refused = env.ada("create", "configmap", "d", "-n", strict, check=False)
    assert refused.returncode == 1
    assert "alert gate critical-alerts cannot ask Alertmanager monitoring" in refused.stderr
    assert "on_unreachable: Fail" in refused.stderr
    assert env.ada("create", "configmap", "d", "-n", lenient).returncode == 0  # Ignore
    assert env.metric("critical-alerts").endswith(" -1.0")


@pytest.mark.parametrize(("text", "expected"), [
    ("alertmanagers: [{name: m, url: 'ftp://x'}]\n", "alertmanager m.url must be an http(s):// URL"),
    ("alertmanagers: [{name: m, url: 'http://x', cache: 1m}]\n", "alertmanager m.cache must be a duration of at most 10s"),
    ("alertmanagers: [{name: m, url: 'http://x'}]\ngates: [{name: g, alertmanager: m, matchers: ['severity=critical'], "
     "outcome: deny, on_unreachable: Fail}]\n", "'severity=critical' is not an Alertmanager matcher"),
    ("alertmanagers: [{name: m, url: 'http://x'}]\ngates: [{name: g, alertmanager: m, matchers: ['a=\"b\"'], "
     "outcome: deny}]\n", "alert gate g.on_unreachable must be Fail or Ignore (no default"),
    ("gates: [{name: g, alertmanager: nope, matchers: ['a=\"b\"'], outcome: deny, on_unreachable: Ignore}]\n",
     "health.yaml:1: alert gate g.alertmanager: no Alertmanager named 'nope'"),
    ("alertmanagers: [{name: m, url: 'http://x'}]\ngates: [{name: g, alertmanager: m, matchers: ['a=\"b\"'], "
     "outcome: maybe, on_unreachable: Ignore}]\n", "alert gate g.outcome must be one of break-glass, deny"),
])
def test_each_mistake_in_health_yaml_is_reported_with_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "health.yaml").write_text(text)
    found = health_policy.load(tmp_path)[1]
    assert any(expected in p for p in found), found
