"""Rate gates through a gateway with a fake clock: delete budgets, circuit breakers, QPS limits.

These gateways run in this process (one at a time) so their clock can be moved: windows refill
and breakers cool down without sleeping. Real kubectl and the official Python client are the
clients; the emulator's request log says what reached the cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, python_client, start_gateway_in_process
from tests.gateway.conftest import send

LIMITS = """
budgets:
  - name: pod-deletes
    resources: [pods]
    per: [cluster]
    windows: {1m: 5, 1h: 20}
    breaker: {cooldown: manual}
  - name: config-deletes
    resources: [configmaps]
    per: [cluster, namespace]
    windows: {1m: 2}
    breaker: {cooldown: 5m}
qps:
  - name: kubectl-lists
    user_agent: "kubectl/*"
    resources: [services]
    verbs: [list]
    per: [user]
    qps: 1
    burst: 2
"""


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(self, gw: GatewayHandle, upstream: harness.RunningEmulator, clock: Clock, tmp: Path,
                 kubectl_path: str) -> None:
        self.gw, self.upstream, self.clock, self.tmp = gw, upstream, clock, tmp
        self.admin = Kubectl(kubectl_path, gw.kubeconfig(tmp / "ada", "ada"))
        self.kubectl_path = kubectl_path
        self.direct = k8s.CoreV1Api(python_client(upstream.url, upstream.ca_file, upstream.admin_token))

    def kubeconfig(self, user: str, *groups: str) -> Path:
        return self.gw.kubeconfig(self.tmp / user, user, groups)

    def seed(self, namespace: str, kind: str, names: list[str], labels: dict[str, str] | None = None) -> None:
        try:
            self.direct.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        except ApiException as e:
            assert e.status == 409
        for name in names:
            meta = k8s.V1ObjectMeta(name=name, labels=labels or {})
            if kind == "pods":
                self.direct.create_namespaced_pod(namespace, k8s.V1Pod(metadata=meta, spec=k8s.V1PodSpec(
                    containers=[k8s.V1Container(name="c", image="busybox")])))
            else:
                self.direct.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=meta))

    def names(self, namespace: str, kind: str = "pods") -> list[str]:
        items = (self.direct.list_namespaced_pod(namespace) if kind == "pods"
                 else self.direct.list_namespaced_config_map(namespace)).items
        return sorted(i.metadata.name for i in items)

    def upstream_deletes(self) -> list[str]:
        return [r.path for r in self.upstream.requests if r.method == "DELETE"]

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.gw.metrics_port}/metrics").read().decode()


@pytest.fixture
def env(tmp_path: Path, kubectl_path: str) -> Iterator[Env]:
    upstream = harness.start(tmp_path / "emulator")
    clock = Clock()
    gw = start_gateway_in_process(tmp_path / "gw", upstream, clock=clock, limits=LIMITS)
    try:
        yield Env(gw, upstream, clock, tmp_path, kubectl_path)
    finally:
        gw.stop()
        upstream.stop()


def breaker_cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", "breaker", *args, "--kubeconfig", str(kubeconfig)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.kubectl
def test_deleting_pods_one_by_one_stops_at_the_minute_budget_and_the_breaker_holds_until_reset(env: Env) -> None:
    pods = [f"web-{i}" for i in range(10)]
    env.seed("shop", "pods", pods)
    env.upstream.clear_requests()
    for pod in pods[:5]:
        assert f'pod "{pod}" deleted' in env.admin("delete", "pod", pod, "-n", "shop").stdout
    refused = env.admin("delete", "pod", "web-5", "-n", "shop", check=False)
    assert refused.returncode == 1
    assert "Error from server (TooManyRequests)" in refused.stderr
    assert "delete budget pod-deletes (5/1m, 20/1h per cluster) has room for 0 more pods in its 1m window" \
        in refused.stderr
    assert "circuit breaker pod-deletes/cluster=emu is open" in refused.stderr
    assert "kubegate breaker reset pod-deletes/cluster=emu" in refused.stderr

    env.clock.now += 120  # the minute window has refilled; the breaker has not closed
    held = env.admin("delete", "pod", "web-6", "-n", "shop", check=False)
    assert "Error from server (TooManyRequests)" in held.stderr
    assert "deletes of pods are stopped: the circuit breaker pod-deletes/cluster=emu is open since" in held.stderr
    assert "ada: delete 1 pods did not fit window 1m (5)" in held.stderr
    assert len(env.upstream_deletes()) == 5
    assert env.names("shop") == pods[5:]

    sre, viewer = env.kubeconfig("sam", "kubegate:sre"), env.kubeconfig("vic", "kubegate:viewers")
    for who in (sre, viewer):  # viewers read everything but secrets: breakers too
        listed = breaker_cli(who, "list")
        assert "pod-deletes/cluster=emu" in listed.stdout and "on reset" in listed.stdout
    nobody = breaker_cli(env.kubeconfig("joe"), "list")  # signed in, but granted nothing
    assert nobody.returncode == 0 and "no circuit breaker is open" in nobody.stderr and nobody.stdout == ""
    denied = breaker_cli(viewer, "reset", "pod-deletes/cluster=emu")
    assert denied.returncode == 1 and 'user "vic" may not reset breaker' in denied.stderr
    reset = breaker_cli(sre, "reset", "pod-deletes/cluster=emu")
    assert reset.returncode == 0, reset.stderr
    assert "breaker pod-deletes/cluster=emu reset by sam" in reset.stdout
    assert breaker_cli(sre, "reset", "pod-deletes/cluster=emu").returncode == 1  # nothing left to reset

    assert 'pod "web-6" deleted' in env.admin("delete", "pod", "web-6", "-n", "shop").stdout
    steps = [(e["annotations"]["kubegate.io/breaker-event"], e["user"]["username"]) for e in env.gw.audit_events()
             if "kubegate.io/breaker-event" in e.get("annotations", {})]
    assert steps == [("tripped", "ada"), ("reset", "sam")]
    refusals = [e for e in env.gw.audit_events() if e.get("responseStatus", {}).get("code") == 429]
    assert len(refusals) == 2 and all(e["annotations"]["kubegate.io/stage"] == "limits" for e in refusals)
    assert refusals[1]["annotations"]["kubegate.io/breaker"] == "pod-deletes/cluster=emu"
    metrics = env.metrics()
    assert 'kubegate_breaker_trips_total{budget="pod-deletes"} 1.0' in metrics
    assert 'kubegate_gate_refusals_total{gate="limits",name="pod-deletes",reason="budget"} 1.0' in metrics
    assert 'kubegate_gate_refusals_total{gate="limits",name="pod-deletes",reason="breaker-open"} 1.0' in metrics
    # 6 deletes taken from 20, plus 2 minutes of refill at 20/h
    assert 'kubegate_budget_remaining{budget="pod-deletes",scope="pod-deletes/cluster=emu",window="1h"} 14.66' \
        in metrics


@pytest.mark.kubectl
def test_kubectl_delete_all_larger_than_the_budget_deletes_nothing(env: Env) -> None:
    env.seed("shop", "pods", [f"web-{i}" for i in range(8)])
    env.upstream.clear_requests()
    out = env.admin("delete", "pods", "--all", "-n", "shop", check=False)
    assert out.returncode == 1
    assert "Error from server (TooManyRequests)" in out.stderr
    assert "has room for 5 more pods in its 1m window; this request would delete 8, so nothing was deleted" \
        in out.stderr
    assert env.upstream_deletes() == []
    assert len(env.names("shop")) == 8
    # The refusal was a preview (a list): it opened no breaker, so a single delete still passes.
    # (Anyone who may list pods can send that header; it must not stop everyone's deletes.)
    single = env.admin("delete", "pod", "web-0", "-n", "shop", check=False)
    assert single.returncode == 0, single.stderr
    assert len(env.upstream_deletes()) == 1


@pytest.mark.kubectl
def test_kubectl_delete_all_within_the_budget_deletes_and_is_counted(env: Env) -> None:
    env.seed("shop", "pods", ["a", "b", "c"])
    env.seed("cart", "pods", ["d", "e", "f"])
    assert env.admin("delete", "pods", "--all", "-n", "shop").returncode == 0
    assert env.names("shop") == []
    # 3 of 5 used: three more in another namespace do not fit (the budget is per cluster)
    out = env.admin("delete", "pods", "--all", "-n", "cart", check=False)
    assert "has room for 2 more pods" in out.stderr and env.names("cart") == ["d", "e", "f"]


def test_deletecollection_counts_every_object_it_would_delete(env: Env) -> None:
    env.seed("shop", "pods", ["w1", "w2", "w3"], {"app": "web"})
    env.seed("shop", "pods", ["d1", "d2", "d3"], {"app": "db"})
    gw_api = k8s.CoreV1Api(python_client(env.gw.url, env.gw.ca_file, env.gw.token("ada")))
    gw_api.delete_collection_namespaced_pod("shop", label_selector="app=web")
    assert env.names("shop") == ["d1", "d2", "d3"]
    with pytest.raises(ApiException) as refused:
        gw_api.delete_collection_namespaced_pod("shop", label_selector="app=db")
    assert refused.value.status == 429
    status = json.loads(refused.value.body)
    assert status["kind"] == "Status" and status["reason"] == "TooManyRequests"
    assert "has room for 2 more pods in its 1m window; this request would delete 3" in status["message"]
    assert env.names("shop") == ["d1", "d2", "d3"]
    assert "Retry-After" not in (refused.value.headers or {})  # client-go must not retry it silently


def test_a_breaker_with_a_cooldown_closes_by_itself(env: Env) -> None:
    env.seed("shop", "configmaps", ["c1", "c2", "c3", "c4"])
    gw_api = k8s.CoreV1Api(python_client(env.gw.url, env.gw.ca_file, env.gw.token("ada")))
    gw_api.delete_namespaced_config_map("c1", "shop")
    gw_api.delete_namespaced_config_map("c2", "shop")
    with pytest.raises(ApiException) as tripped:
        gw_api.delete_namespaced_config_map("c3", "shop")
    assert tripped.value.status == 429 and "it closes by itself at" in json.loads(tripped.value.body)["message"]
    env.clock.now += 299
    with pytest.raises(ApiException):
        gw_api.delete_namespaced_config_map("c3", "shop")
    env.clock.now += 1
    gw_api.delete_namespaced_config_map("c3", "shop")
    # the budget is per namespace: another namespace was never affected
    env.seed("cart", "configmaps", ["x"])
    gw_api.delete_namespaced_config_map("x", "cart")
    assert env.names("shop", "configmaps") == ["c4"]


def test_qps_limit_answers_429_with_retry_after_for_matching_clients_only(env: Env) -> None:
    token = env.gw.token("ada")

    def list_services(user_agent: str) -> tuple[int, dict[str, str], bytes]:
        r = send(env.gw.port, env.gw.ca_file, "GET", "/api/v1/namespaces/default/services",
                 headers={"Authorization": f"Bearer {token}", "User-Agent": user_agent})
        return r.status, r.headers, r.body

    assert [list_services("kubectl/v1.37.1 (linux/amd64)")[0] for _ in range(2)] == [200, 200]
    code, headers, body = list_services("kubectl/v1.37.1 (linux/amd64)")
    assert code == 429 and headers["retry-after"] == "1"
    status = json.loads(body)
    assert status["reason"] == "TooManyRequests" and status["details"]["retryAfterSeconds"] == 1
    assert "limit kubectl-lists allows 1/s (burst 2) per user" in status["message"]
    assert list_services("my-controller/2.0")[0] == 200  # not a kubectl: this limit does not apply
    env.clock.now += 1
    assert list_services("kubectl/v1.37.1 (linux/amd64)")[0] == 200


def test_dry_run_deletes_take_nothing_from_the_budget(env: Env) -> None:
    env.seed("shop", "pods", ["a"])
    gw_api = k8s.CoreV1Api(python_client(env.gw.url, env.gw.ca_file, env.gw.token("ada")))
    for _ in range(7):
        gw_api.delete_namespaced_pod("a", "shop", dry_run="All")
    assert "budget" not in "".join(e["annotations"].get("kubegate.io/budget", "") for e in env.gw.audit_events())


def _wait_for(predicate: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_broken_limits_file_is_refused_and_the_old_one_keeps_serving(env: Env) -> None:
    limits = env.gw.settings.path(env.gw.settings.gates.policy_dir) / "limits.yaml"
    limits.write_text(LIMITS.replace("{1m: 5, 1h: 20}", "{1m: 5, 1h: 4}"))  # unreachable 1m window
    assert _wait_for(lambda: 'kubegate_policy_reloads_total{policy="gates",result="refused"} 1.0' in env.metrics())
    env.seed("shop", "pods", [f"p{i}" for i in range(7)])
    gw_api = k8s.CoreV1Api(python_client(env.gw.url, env.gw.ca_file, env.gw.token("ada")))
    for i in range(5):  # the old budget (5/1m) still counts
        gw_api.delete_namespaced_pod(f"p{i}", "shop")
    with pytest.raises(ApiException) as refused:
        gw_api.delete_namespaced_pod("p5", "shop")
    assert "pod-deletes (5/1m, 20/1h per cluster)" in json.loads(refused.value.body)["message"]
    env.seed("shop", "configmaps", ["a", "b", "c"])
    limits.write_text(LIMITS.replace("windows: {1m: 2}", "windows: {1m: 1}"))
    assert _wait_for(lambda: 'kubegate_policy_reloads_total{policy="gates",result="loaded"} 1.0' in env.metrics())
    gw_api.delete_namespaced_config_map("a", "shop")
    with pytest.raises(ApiException) as second:
        gw_api.delete_namespaced_config_map("b", "shop")
    assert "config-deletes (1/1m per cluster, namespace)" in json.loads(second.value.body)["message"]


@pytest.mark.kubectl
def test_a_reader_cannot_open_a_breaker_with_a_header(env: Env) -> None:
    env.seed("shop", "pods", [f"web-{i}" for i in range(8)])
    viewer = env.kubeconfig("vera", "kubegate:viewers")
    token = env.gw.token("vera", ["kubegate:viewers"])
    resp = send(env.gw.port, env.gw.ca_file, "GET", "/api/v1/namespaces/shop/pods",
                headers={"Authorization": f"Bearer {token}", "Kubectl-Command": "kubectl delete"})
    assert resp.status == 429  # the preview is refused: 8 would not fit the budget of 5...
    assert viewer.exists()
    out = subprocess.run([sys.executable, "-m", "kubegate", "breaker", "list", "--kubeconfig",
                          str(env.kubeconfig("ada-ops", "kubegate:cluster-admins"))],
                         capture_output=True, text=True, timeout=60)
    assert "pod-deletes" not in out.stdout  # ...and opens no breaker
    assert env.admin("delete", "pod", "web-0", "-n", "shop").returncode == 0


@pytest.mark.kubectl
def test_deletes_the_cluster_refuses_give_their_budget_back(env: Env) -> None:
    env.seed("cfg", "configmaps", ["real"])
    for i in range(6):  # typos: each a 404 from the cluster, on a budget of 2 a minute
        out = env.admin("delete", "configmap", f"typo-{i}", "-n", "cfg", check=False)
        assert "NotFound" in out.stderr, out.stderr
    assert env.admin("delete", "configmap", "real", "-n", "cfg").returncode == 0
    events = [e for e in env.gw.audit_events() if e.get("objectRef", {}).get("name", "").startswith("typo-")]
    assert len(events) == 6 and all("given back: the cluster answered 404" in e["annotations"]["kubegate.io/budget"]
                                    for e in events)


@pytest.mark.kubectl
def test_a_refused_delete_says_when_the_next_one_fits(env: Env) -> None:
    env.seed("cfg2", "configmaps", ["a", "b", "c"])
    assert env.admin("delete", "configmap", "a", "b", "-n", "cfg2").returncode == 0
    out = env.admin("delete", "configmap", "c", "-n", "cfg2", check=False)
    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(env.clock.now + 30))
    assert f"the budget has room for 1 again at {expected} (in 30s)" in out.stderr, out.stderr
