"""No side doors around the gates: requests that act without looking like it are judged as what they do.

nodes/proxy reaches the kubelet (exec in any pod of the node); a proxied request can change what is
behind it whatever its method; an eviction deletes its pod; a scale changes its workload; a
collection delete deletes each object it selects; `*` in a policy is no licence for `/logs/`.
Each is driven as an attacker would, over raw HTTPS, and the emulator's log shows what got through.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client as k8s

from kubegate.emulator import harness
from kubegate.gateway.authz.policy import object_match
from kubegate.gateway.errors import Denial
from kubegate.gateway.request.info import classify
from kubegate.gateway.request.query import Query
from tests.conftest import GatewayHandle, python_client, start_gateway
from tests.gateway.conftest import Response, assert_status, send

P = pytest.param
RULES = (Path(__file__).resolve().parents[3] / "policies" / "gates" / "rules.yaml").read_text()
FREEZE = """
windows:
  - name: always
    timezone: UTC
    from: "2020-01-01T00:00"
    to: "2099-01-01T00:00"
    match: {namespaces: ["frozen-*"]}
"""


@pytest.mark.parametrize("action", ["exec", "run", "attach", "portForward", "portforward", "cri", "checkpoint",
                                    "debug", "EXEC"])
def test_kubelet_actions_through_nodes_proxy_are_refused(action: str) -> None:
    with pytest.raises(Denial) as err:
        classify("POST", f"/api/v1/nodes/n1/proxy/{action}/kube-system/etcd-0/etcd", Query.parse("command=sh"))
    assert err.value.code == 403


def test_other_nodes_proxy_paths_classify_as_the_proxy_they_are() -> None:
    info = classify("GET", "/api/v1/nodes/n1/proxy/metrics/cadvisor", Query())
    assert (info.verb, info.object_ref, info.proxy_path) == ("get", "nodes/proxy", "metrics/cadvisor")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_only_get_reaches_a_watch_path(method: str) -> None:
    with pytest.raises(Denial) as err:
        classify(method, "/api/v1/watch/namespaces/a/pods", Query())
    assert err.value.code == 405


@pytest.mark.parametrize(("obj", "pattern", "matches"), [
    P("/logs/", "*", False, id="star"),
    P("/debug/pprof/", "**", False, id="double-star"),
    P("/metrics", "*/*", False, id="star-slash-star"),
    P("/metrics", "/*", True, id="url-prefix"),
    P("/healthz", "/healthz", True, id="url"),
    P("pods", "**", True, id="double-star-resource"),
    P("pods/exec", "*", False, id="star-no-subresource"),
])
def test_only_url_patterns_match_non_resource_urls(obj: str, pattern: str, matches: bool) -> None:
    assert object_match(obj, pattern) is matches


class Env:
    def __init__(self, gw: GatewayHandle, upstream: harness.RunningEmulator) -> None:
        self.gw, self.upstream = gw, upstream
        self.direct = python_client(upstream.url, upstream.ca_file, upstream.admin_token)

    def send(self, method: str, path: str, groups: tuple[str, ...], body: Any = None,
             content_type: str = "application/json") -> Response:
        token = self.gw.token(f"u-{uuid.uuid4().hex[:6]}", groups)
        data = json.dumps(body).encode() if body is not None else None
        return send(self.gw.port, self.gw.ca_file, method, path, body=data,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})

    def reached(self, fragment: str) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.upstream.requests if fragment in r.path]

    def namespace(self, prefix: str = "doors") -> str:
        ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
        k8s.CoreV1Api(self.direct).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        return ns


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state = tmp_path_factory.mktemp("doors")
    upstream = harness.start(state / "emulator")
    gw = start_gateway(state / "gateway", upstream, gate_files={"rules.yaml": RULES, "freeze.yaml": FREEZE})
    yield Env(gw, upstream)
    gw.stop()
    upstream.stop()


ADMIN = ("kubegate:cluster-admins",)
SRE = ("kubegate:sre",)
VIEWER = ("kubegate:viewers",)


@pytest.mark.parametrize("groups", [P(ADMIN, id="cluster-admin"), P(SRE, id="sre")])
def test_nobody_execs_through_the_kubelet(env: Env, groups: tuple[str, ...]) -> None:
    resp = env.send("POST", "/api/v1/nodes/node-1/proxy/exec/kube-system/etcd-0/etcd?command=sh", groups)
    assert_status(resp, 403, "Forbidden")
    assert env.reached("/proxy/") == []


def test_nodes_proxy_is_for_cluster_admins_only(env: Env) -> None:
    assert_status(env.send("GET", "/api/v1/nodes/node-1/proxy/metrics", SRE), 403, "Forbidden")
    assert env.reached("/proxy/metrics") == []
    env.send("GET", "/api/v1/nodes/node-1/proxy/metrics", ADMIN)  # the emulator has no kubelet; it got there
    assert env.reached("/proxy/metrics") == ["GET /api/v1/nodes/node-1/proxy/metrics"]


@pytest.mark.parametrize("path", ["/logs/", "/logs/kube-apiserver.log", "/debug/pprof/", "/metrics",
                                  "/debug/flags/v"])
def test_star_grants_no_non_resource_url(env: Env, path: str) -> None:
    # Viewers read `*` (every resource); that is no licence for the apiserver's own URLs.
    assert_status(env.send("GET", path, VIEWER), 403, "Forbidden")
    assert [r for r in env.upstream.requests if r.path == path] == []


@pytest.mark.parametrize(("method", "path"), [
    P("GET", "/api/v1/namespaces/{ns}/pods/web/proxy/admin/drop-tables", id="pods-proxy-get"),
    P("POST", "/api/v1/namespaces/{ns}/services/web:80/proxy/admin", id="services-proxy-post"),
    P("GET", "/api/v1/namespaces/{ns}/services/https:web:443/proxy/", id="services-proxy-get"),
])
def test_proxied_requests_are_mutations_to_a_freeze(env: Env, method: str, path: str) -> None:
    ns = env.namespace("frozen")
    resp = env.send(method, path.format(ns=ns), SRE)
    status = assert_status(resp, 403, "Forbidden")
    assert "break-glass" in status["message"] and "always" in status["message"]
    assert env.reached(f"/namespaces/{ns}/") == []


@pytest.fixture
def protected(env: Env) -> str:
    ns = env.namespace()
    core, apps = k8s.CoreV1Api(env.direct), k8s.AppsV1Api(env.direct)
    labels = {"kubegate.io/protected": "true", "app": "ledger"}
    core.create_namespaced_pod(ns, k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="ledger-0", labels=labels),
                                             spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="x")])))
    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="pricing", labels=labels)))
    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="scratch",
                                                                                     labels={"app": "tmp"})))
    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="unlabelled")))
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ledger", "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ledger"}},
                 "template": {"metadata": {"labels": {"app": "ledger"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    env.upstream.clear_requests()
    return ns


@pytest.mark.parametrize(("method", "path", "body", "content_type"), [
    P("POST", "/api/v1/namespaces/{ns}/pods/ledger-0/eviction",
      {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "ledger-0"}}, "application/json",
      id="eviction"),
    P("PATCH", "/apis/apps/v1/namespaces/{ns}/deployments/ledger/scale", {"spec": {"replicas": 5}},
      "application/merge-patch+json", id="scale-subresource"),
    P("PUT", "/apis/apps/v1/namespaces/{ns}/deployments/ledger/scale",
      {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "ledger"}, "spec": {"replicas": 5}},
      "application/json", id="scale-update"),
    P("DELETE", "/api/v1/namespaces/{ns}/configmaps?labelSelector=app", None, "application/json",
      id="deletecollection-selecting-it"),
    P("DELETE", "/api/v1/namespaces/{ns}/configmaps?labelSelector=app%3Dledger", None, "application/json",
      id="deletecollection-selecting-only-it"),
])
def test_protected_objects_are_protected_from_every_side(env: Env, protected: str, method: str, path: str,
                                                         body: Any, content_type: str) -> None:
    resp = env.send(method, path.format(ns=protected), SRE, body, content_type)
    status = assert_status(resp, 403, "Forbidden")
    assert "change-protected-object" in status["message"] and "Approval ticket" in status["message"]
    # Nothing but reads, and the dry run that shows the approver the fields an update changes.
    executed = [r for r in env.upstream.requests if r.method != "GET" and protected in r.path]
    assert [r for r in executed if r.query != "dryRun=All"] == []
    assert all(r.user is not None and "kubegate:sre" in r.user.groups for r in executed)  # as the requester


def test_a_collection_delete_that_spares_protected_objects_passes(env: Env, protected: str) -> None:
    resp = env.send("DELETE", f"/api/v1/namespaces/{protected}/configmaps?labelSelector=app%3Dtmp", SRE)
    assert resp.status == 200, resp.body
    names = [c.metadata.name for c in k8s.CoreV1Api(env.direct).list_namespaced_config_map(protected).items]
    assert names == ["pricing", "unlabelled"]


def test_the_live_object_is_read_once_however_many_rules_look(env: Env) -> None:
    ns = env.namespace("prod")  # both the replicas rule (body, on the patch's result) and the protected-object rule apply
    k8s.AppsV1Api(env.direct).create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "ledger", "labels": {"kubegate.io/protected": "true", "app": "ledger"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ledger"}},
                 "template": {"metadata": {"labels": {"app": "ledger"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    env.upstream.clear_requests()
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/ledger"
    resp = env.send("PATCH", path, SRE, {"spec": {"replicas": 0}}, "application/merge-patch+json")
    status = assert_status(resp, 403, "Forbidden")
    assert "scale-to-zero-in-production" in status["message"] and "change-protected-object" in status["message"]
    seen = [f"{r.method} {r.path}" + (f"?{r.query}" if r.query else "") for r in env.upstream.requests]
    assert seen.count(f"GET {path}") == 1, seen  # read once, by the rules and the blast radius alike
    # The rest is the blast radius's: the namespace's pods (none: nothing scales them down here) and
    # the dry run of the patch for the ticket's changed fields.
    assert seen[0] == f"GET {path}" and f"PATCH {path}?dryRun=All" in seen
    assert all(s.startswith("GET ") or s == f"PATCH {path}?dryRun=All" for s in seen), seen
