"""The gate judges exactly the request the apiserver executes: end to end through a Go front.

The gateway's upstream here is the emulator behind a Go net/http front (tests/go/front), which
hands the emulator the query exactly as Go's url.ParseQuery read it, and the emulator reads
booleans and DeleteOptions as kube-apiserver does. So a request the gateway read one way and Go
another would show: the emulator would delete what the gates did not count. Each case is either
refused with a Status (and nothing reaches the front) or judged exactly as it was executed.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client as k8s

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, python_client, start_gateway
from tests.gateway.conftest import Response, assert_status, send

P = pytest.param
RULES = (Path(__file__).resolve().parents[3] / "policies" / "gates" / "rules.yaml").read_text()

LIMITS = """
budgets:
  - name: pod-deletes
    resources: [pods]
    per: [cluster]
    windows: {1m: 100000}
    breaker: {cooldown: manual}
  - name: config-deletes
    resources: [configmaps]
    per: [cluster, namespace]
    windows: {1h: 1}
    breaker: {cooldown: manual}
"""


class Env:
    def __init__(self, gw: GatewayHandle, upstream: harness.RunningEmulator) -> None:
        self.gw, self.upstream = gw, upstream
        self.token = gw.token("ada")
        self.direct = k8s.CoreV1Api(python_client(upstream.url, upstream.ca_file, upstream.admin_token))

    def namespace(self, pods: dict[str, dict[str, str]] | None = None, configmaps: int = 0,
                  prefix: str = "parity") -> str:
        ns = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.direct.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
        for name, labels in (pods or {}).items():
            self.direct.create_namespaced_pod(ns, k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(name=name, labels=labels),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="busybox")])))
        for i in range(configmaps):
            self.direct.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"cm{i}")))
        return ns

    def pods(self, ns: str) -> list[str]:
        return sorted(p.metadata.name for p in self.direct.list_namespaced_pod(ns).items)

    def configmaps(self, ns: str) -> list[str]:
        return sorted(c.metadata.name for c in self.direct.list_namespaced_config_map(ns).items)

    def send(self, method: str, path: str, body: dict[str, Any] | bytes | None = None,
             content_type: str = "application/json") -> Response:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        return send(self.gw.port, self.gw.ca_file, method, path, headers=headers, body=data)

    def seen(self, ns: str) -> list[str]:
        """What the Go front passed to the emulator for this namespace."""
        assert self.gw.front is not None
        return [line for line in self.gw.front.seen() if f"/namespaces/{ns}" in line]

    def audit(self, audit_id: str) -> dict[str, Any]:
        return next(e for e in self.gw.audit_events() if e["auditID"] == audit_id)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state = tmp_path_factory.mktemp("parity")
    upstream = harness.start(state / "emulator")
    gw = start_gateway(state / "gateway", upstream, limits=LIMITS, gate_files={"rules.yaml": RULES})
    yield Env(gw, upstream)
    gw.stop()
    upstream.stop()


PODS = {"web-1": {"app": "web"}, "web-2": {"app": "web"}, "db-1": {"app": "db"}}


def test_the_go_front_reads_queries_as_the_apiserver_does(env: Env, tmp_path: Path) -> None:
    # Without the gateway: the front (Go) drops the pair with ';' and the emulator deletes all pods.
    # This is the attack the gateway must not let through.
    ns = env.namespace(PODS)
    assert env.gw.front is not None
    direct = send(int(env.gw.front.url.rsplit(":", 1)[1]), env.gw.front.ca_file, "DELETE",
                  f"/api/v1/namespaces/{ns}/pods?fieldSelector=metadata.name%3Dnone;",
                  headers={"Authorization": f"Bearer {env.upstream.admin_token}"})
    assert direct.status == 200
    assert env.pods(ns) == []
    assert env.seen(ns) == [f"DELETE /api/v1/namespaces/{ns}/pods?"]


@pytest.mark.parametrize("query", [
    P("fieldSelector=metadata.name%3Dnone;", id="semicolon-after-value"),
    P("labelSelector=app%3Dnone;x=y", id="semicolon-between-pairs"),
    P("labelSelector;=app%3Dnone", id="semicolon-in-key"),
    P("labelSelector=app%3Dnone&dryRun=All;", id="semicolon-on-dry-run"),
    P("labelSelector=app%3Dnone%ZZ", id="invalid-escape"),
    P("labelSelector=app%3Dnone%2", id="truncated-escape"),
    P("labelSelector=app%3Dnone%", id="lone-percent"),
    P("labelSelector=%ff%fe", id="not-utf8"),
    P("labelSelector=%09", id="control-character"),
    P("labelSelector=app%3Dnone&labelSelector=", id="repeated-selector-second-blank"),
    P("labelSelector=&labelSelector=app%3Dnone", id="repeated-selector-first-blank"),
    P("fieldSelector=metadata.name%3Dweb-1&fieldSelector=metadata.name%3Ddb-1", id="repeated-field-selector"),
    P("labelSelector=app%3Dnone&limit=1x", id="non-integer-limit"),
    P("labelSelector=app%3Dnone&dryRun=all", id="dry-run-lowercase"),
    P("labelSelector=app%3Dnone&propagationPolicy=Sideways", id="unknown-propagation"),
])
def test_queries_go_would_read_differently_are_refused(env: Env, query: str) -> None:
    ns = env.namespace(PODS)
    resp = env.send("DELETE", f"/api/v1/namespaces/{ns}/pods?{query}")
    assert_status(resp, 400, "BadRequest")
    assert "not forwarded" in resp.json()["message"]
    assert env.seen(ns) == []
    assert env.pods(ns) == ["db-1", "web-1", "web-2"]


@pytest.mark.parametrize(("query", "forwarded", "deleted"), [
    P("labelSelector=app+in+%28web%29", "labelSelector=app+in+%28web%29", 2, id="plus-is-space"),
    P("labelSelector=app%20in%20(web)", "labelSelector=app+in+%28web%29", 2, id="percent-20"),
    P("labelSelector=app%3Ddb&&", "labelSelector=app%3Ddb", 1, id="empty-pairs-skipped"),
    P("&labelSelector=app%3Ddb", "labelSelector=app%3Ddb", 1, id="leading-ampersand"),
    P("fieldSelector=metadata.name%3Dweb-2&labelSelector=app%3Dweb", "fieldSelector=metadata.name%3Dweb-2&"
      "labelSelector=app%3Dweb", 1, id="two-selectors-reordered"),
])
def test_canonical_query_is_what_is_forwarded_and_counted(env: Env, query: str, forwarded: str, deleted: int) -> None:
    ns = env.namespace(PODS)
    resp = env.send("DELETE", f"/api/v1/namespaces/{ns}/pods?{query}")
    assert resp.status == 200, resp.body
    # The budget counted (by listing as the caller, with the canonical selectors) exactly what went.
    assert len(env.pods(ns)) == 3 - deleted
    budget = env.audit(resp.headers["audit-id"])["annotations"]["kubegate.io/budget"]
    assert budget.endswith(f": {deleted} pods")
    assert f"DELETE /api/v1/namespaces/{ns}/pods?{forwarded}" in env.seen(ns)


@pytest.mark.parametrize("query", [
    P("labelSelector=", id="empty"),
    P("labelSelector=%20", id="space"),
    P("labelSelector=+++", id="plus-spaces"),
    P("fieldSelector=%20&labelSelector=", id="both-blank"),
    P("labelSelector=app", id="selects-every-pod"),
    P("labelSelector=app%2Cbogus%21%3Dx", id="selects-every-pod-too"),
])
def test_selectors_that_select_everything_are_no_selector(env: Env, query: str) -> None:
    ns = env.namespace(PODS)
    resp = env.send("DELETE", f"/api/v1/namespaces/{ns}/pods?{query}")
    status = assert_status(resp, 403, "Forbidden")
    assert "deletecollection-without-selector" in status["message"]
    assert [line for line in env.seen(ns) if line.startswith("DELETE")] == []
    assert env.pods(ns) == ["db-1", "web-1", "web-2"]


@pytest.mark.parametrize(("query", "verb", "watched"), [
    P("watch=true", "watch", True, id="true"),
    P("watch=", "watch", True, id="empty-value"),
    P("watch", "watch", True, id="bare-key"),
    P("watch=no", "watch", True, id="no-is-true"),
    P("watch=f", "watch", True, id="f-is-true"),
    P("watch=False", "list", False, id="False"),
    P("watch=0", "list", False, id="zero"),
    P("watch=false&watch=true", None, False, id="repeated"),
])
def test_watch_is_the_apimachinery_boolean(env: Env, query: str, verb: str | None, watched: bool) -> None:
    ns = env.namespace({"web-1": {"app": "web"}})
    resp = env.send("GET", f"/api/v1/namespaces/{ns}/pods?{query}&timeoutSeconds=1")
    if verb is None:
        assert_status(resp, 400, "BadRequest")
        assert env.seen(ns) == []
        return
    assert resp.status == 200, resp.body
    assert env.audit(resp.headers["audit-id"])["verb"] == verb
    if watched:  # a stream of watch events, the first one the existing pod
        first = json.loads(resp.body.splitlines()[0])
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "web-1")
    else:
        assert resp.json()["kind"] == "PodList"


def test_delete_options_come_from_the_body_first(env: Env) -> None:
    ns = env.namespace(PODS)
    pod = f"/api/v1/namespaces/{ns}/pods/web-1"
    # A dry run by the query next to a body: the apiserver reads only the body (a real delete).
    resp = env.send("DELETE", f"{pod}?dryRun=All", {"kind": "DeleteOptions", "apiVersion": "v1"})
    assert_status(resp, 400, "BadRequest")
    assert "dryRun says something else than the DeleteOptions body" in resp.json()["message"]
    resp = env.send("DELETE", f"{pod}?propagationPolicy=Orphan", {"propagationPolicy": "Foreground"})
    assert_status(resp, 400, "BadRequest")
    resp = env.send("DELETE", f"/api/v1/namespaces/{ns}/pods?dryRun=All", {})
    assert_status(resp, 400, "BadRequest")
    assert env.seen(ns) == [] and env.pods(ns) == ["db-1", "web-1", "web-2"]

    # The body's dry run: nothing deleted, nothing charged.
    resp = env.send("DELETE", pod, {"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]})
    assert resp.status == 200, resp.body
    assert env.audit(resp.headers["audit-id"])["annotations"]["kubegate.io/budget"].endswith("0 pods (dry run)")
    # The same dry run in both places agrees.
    resp = env.send("DELETE", f"{pod}?dryRun=All", {"dryRun": ["All"]})
    assert resp.status == 200, resp.body
    assert env.pods(ns) == ["db-1", "web-1", "web-2"]
    # A protobuf DeleteOptions (client-go's typed clients) is read too: dryRun is field 5.
    from tests.gateway.request.test_decoders import field
    proto = b"k8s\x00" + field(1, field(1, "v1") + field(2, "DeleteOptions")) + field(2, field(5, "All"))
    resp = env.send("DELETE", pod, proto, "application/vnd.kubernetes.protobuf")
    assert resp.status == 200, resp.body
    assert env.audit(resp.headers["audit-id"])["annotations"]["kubegate.io/budget"].endswith("(dry run)")
    # A YAML body is read too.
    resp = env.send("DELETE", pod, b"dryRun: [All]\n", "application/yaml")
    assert resp.status == 200, resp.body
    assert env.pods(ns) == ["db-1", "web-1", "web-2"]


@pytest.mark.parametrize(("body", "content_type"), [
    P({"dryRun": ["all"]}, "application/json", id="lowercase-all"),
    P({"dryRun": "All"}, "application/json", id="dry-run-not-a-list"),
    P({"kind": "Pod", "apiVersion": "v1"}, "application/json", id="not-delete-options"),
    P({"gracePeriodSeconds": "0"}, "application/json", id="grace-as-string"),
    P({"propagationPolicy": "Sideways"}, "application/json", id="unknown-propagation"),
    P(b"{not json", "application/json", id="not-json"),
    P(b"k8s\x00garbage", "application/vnd.kubernetes.protobuf", id="garbled-protobuf"),
])
def test_unreadable_delete_options_are_refused(env: Env, body: dict[str, Any] | bytes, content_type: str) -> None:
    ns = env.namespace(PODS)
    resp = env.send("DELETE", f"/api/v1/namespaces/{ns}/pods/web-1", body, content_type)
    assert_status(resp, 400, "BadRequest")
    assert env.seen(ns) == [] and env.pods(ns) == ["db-1", "web-1", "web-2"]


def test_a_dry_run_does_not_pass_an_open_breaker(env: Env) -> None:
    ns = env.namespace(configmaps=3)
    assert env.send("DELETE", f"/api/v1/namespaces/{ns}/configmaps/cm0").status == 200
    tripped = env.send("DELETE", f"/api/v1/namespaces/{ns}/configmaps/cm1")
    assert_status(tripped, 429, "TooManyRequests")
    for how in ({"dryRun": ["All"]}, None):
        path = f"/api/v1/namespaces/{ns}/configmaps/cm2" + ("" if how else "?dryRun=All")
        resp = env.send("DELETE", path, how)
        status = assert_status(resp, 429, "TooManyRequests")
        assert "circuit breaker" in status["message"]
    assert env.configmaps(ns) == ["cm1", "cm2"]


def _proto_deployment(name: str, *spec_parts: bytes) -> bytes:
    from tests.gateway.request.test_decoders import deployment, field, spec
    return deployment(field(1, field(1, name)), *(spec(p) for p in spec_parts))


@pytest.mark.parametrize(("body", "content_type"), [
    P(b'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: NAME}\nspec:\n  replicas: 0o0\n',
      "application/yaml", id="yaml-0o0"),
    P(b'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: NAME}\nspec:\n  replicas: 0x0\n',
      "application/yaml", id="yaml-0x0"),
    P(b'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: NAME}\nspec:\n  replicas: 0_0\n',
      "application/yaml", id="yaml-0_0"),
    P(b'{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "NAME"}, "spec": {"replicas": 0e5}}',
      "application/json", id="json-0e5"),
    P("PROTO-MERGED", "application/vnd.kubernetes.protobuf", id="protobuf-spec-twice"),
    P("PROTO-WRAP", "application/vnd.kubernetes.protobuf", id="protobuf-int32-wraps"),
])
def test_rules_judge_bodies_as_go_decodes_them(env: Env, body: bytes | str, content_type: str) -> None:
    from tests.gateway.request.test_decoders import field
    ns = env.namespace(prefix="prod")
    name = f"web-{uuid.uuid4().hex[:6]}"
    if body == "PROTO-MERGED":  # replicas 0 in the first spec, the rest in a second: Go merges them
        data = _proto_deployment(name, field(1, 0), field(2, field(1, field(1, field(1, "app") + field(2, "web")))))
    elif body == "PROTO-WRAP":  # 2^32 in an int32 field: 0 to Go
        data = _proto_deployment(name, field(1, 2**32))
    else:
        assert isinstance(body, bytes)
        data = body.replace(b"NAME", name.encode())
    resp = env.send("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", data, content_type)
    status = assert_status(resp, 403, "Forbidden")
    assert "scale-to-zero-in-production" in status["message"] and "could not be read" not in status["message"]
    assert [line for line in env.seen(ns) if line.startswith("POST")] == []


@pytest.mark.parametrize(("body", "content_type"), [
    P(b'{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": 3, '
      b'"replicas": 0}}', "application/json", id="json-duplicate-key"),
    P(b'{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": NaN}}',
      "application/json", id="json-nan"),
    P(b'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nbase: &b {replicas: 3}\nspec:\n  <<: *b\n'
      b'  replicas: 0\n', "application/yaml", id="yaml-anchor-and-merge"),
    P(b'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: !!int "0"\n',
      "application/yaml", id="yaml-tag"),
    P(b'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: 1}\nspec: {replicas: 0}\n',
      "application/yaml", id="yaml-duplicate-key"),
    P(b'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\nspec: {replicas: 0}\n',
      "application/yaml", id="yaml-two-documents"),
    P(b'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
      b'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n'
      b'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n', "application/yaml",
      id="yaml-alias-bomb"),
])
def test_bodies_go_would_read_differently_are_refused(env: Env, body: bytes, content_type: str) -> None:
    ns = env.namespace(prefix="prod")
    resp = env.send("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body, content_type)
    assert_status(resp, 400, "BadRequest")
    assert env.seen(ns) == []


def test_compressed_request_bodies_are_refused(env: Env) -> None:
    import gzip
    ns = env.namespace(prefix="prod")
    body = gzip.compress(b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}')
    resp = send(env.gw.port, env.gw.ca_file, "POST", f"/api/v1/namespaces/{ns}/configmaps", body=body,
                headers={"Authorization": f"Bearer {env.token}", "Content-Type": "application/json",
                         "Content-Encoding": "gzip"})
    assert_status(resp, 415, "UnsupportedMediaType")
    assert env.seen(ns) == []


class TestPatchesJudgedByResult:
    """Rules see the object a patch leaves (the live object, read as the caller, with the patch
    applied), so a patch cannot hide what it does."""

    @pytest.fixture
    def deployment(self, env: Env) -> tuple[str, str]:
        ns = env.namespace(prefix="prod")
        apps = k8s.AppsV1Api(python_client(env.upstream.url, env.upstream.ca_file, env.upstream.admin_token))
        apps.create_namespaced_deployment(ns, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "minReadySeconds": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
        return ns, f"/apis/apps/v1/namespaces/{ns}/deployments/web"

    @pytest.mark.parametrize(("patch", "content_type"), [
        P([{"op": "move", "from": "/spec/minReadySeconds", "path": "/spec/replicas"}],
          "application/json-patch+json", id="json-patch-move"),
        P([{"op": "copy", "from": "/spec/minReadySeconds", "path": "/spec/replicas"}],
          "application/json-patch+json", id="json-patch-copy"),
        P([{"op": "test", "path": "/spec/replicas", "value": 3}, {"op": "replace", "path": "/spec/replicas",
                                                                   "value": 0}],
          "application/json-patch+json", id="json-patch-test-then-replace"),
        P({"spec": {"replicas": 0}}, "application/merge-patch+json", id="merge-patch"),
        P({"spec": {"replicas": 0}}, "application/strategic-merge-patch+json", id="strategic-merge-patch"),
        P({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 0}},
          "application/apply-patch+yaml", id="server-side-apply"),
    ])
    def test_a_patch_to_zero_replicas_is_seen_however_written(self, env: Env, deployment: tuple[str, str],
                                                             patch: Any, content_type: str) -> None:
        ns, path = deployment
        query = "?fieldManager=t" if content_type == "application/apply-patch+yaml" else ""
        resp = env.send("PATCH", path + query, json.dumps(patch).encode(), content_type)
        status = assert_status(resp, 403, "Forbidden")
        assert "scale-to-zero-in-production" in status["message"]
        assert "could not be read" not in status["message"]
        # Nothing executed: the one PATCH the cluster saw is the dry run that shows the approver
        # the fields the change would set (the ticket's blast radius).
        assert [line for line in env.seen(ns) if line.startswith("PATCH") and "dryRun=All" not in line] == []

    @pytest.mark.parametrize(("patch", "content_type"), [
        P([{"op": "copy", "from": "/spec/replicas", "path": "/spec/minReadySeconds"}],
          "application/json-patch+json", id="json-patch-copy-elsewhere"),
        P({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}},
          "application/strategic-merge-patch+json", id="strategic-image-change"),
        P({"metadata": {"labels": {"tier": "front"}}}, "application/merge-patch+json", id="merge-label"),
    ])
    def test_a_patch_that_keeps_replicas_passes(self, env: Env, deployment: tuple[str, str], patch: Any,
                                                 content_type: str) -> None:
        ns, path = deployment
        resp = env.send("PATCH", path, json.dumps(patch).encode(), content_type)
        assert resp.status == 200, resp.body
        assert resp.json()["spec"]["replicas"] == 3

    def test_a_subject_added_to_the_cluster_admin_binding_needs_approval(self, env: Env) -> None:
        name = f"admins-{uuid.uuid4().hex[:6]}"
        rbac = k8s.RbacAuthorizationV1Api(python_client(env.upstream.url, env.upstream.ca_file,
                                                        env.upstream.admin_token))
        rbac.create_cluster_role_binding({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "root", "apiGroup": "rbac.authorization.k8s.io"}]})
        path = f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}"
        patch = [{"op": "add", "path": "/subjects/-", "value": {"kind": "User", "name": "mallory",
                                                               "apiGroup": "rbac.authorization.k8s.io"}}]
        resp = env.send("PATCH", path, json.dumps(patch).encode(), "application/json-patch+json")
        status = assert_status(resp, 403, "Forbidden")
        assert "bind-cluster-admin" in status["message"]
        binding = rbac.read_cluster_role_binding(name)
        assert [s.name for s in binding.subjects] == ["root"]

    def test_a_patch_that_cannot_be_applied_takes_the_conservative_outcome(self, env: Env,
                                                                          deployment: tuple[str, str]) -> None:
        ns, path = deployment
        patch = [{"op": "replace", "path": "/spec/nothing/here", "value": 0}]
        resp = env.send("PATCH", path, json.dumps(patch).encode(), "application/json-patch+json")
        status = assert_status(resp, 403, "Forbidden")
        assert "scale-to-zero-in-production" in status["message"] and "could not be read" in status["message"]


def test_a_protobuf_field_the_gateway_does_not_model_makes_the_rules_conservative(env: Env) -> None:
    from tests.gateway.request.test_decoders import field
    ns = env.namespace(prefix="prod")
    # replicas 2 (fine), plus field 99 of DeploymentSpec, which Go would skip: the gateway cannot
    # know what it means, so the body counts as unreadable and the replicas rule applies.
    data = _proto_deployment(f"web-{uuid.uuid4().hex[:6]}", field(1, 2) + field(99, 1))
    resp = env.send("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", data, "application/vnd.kubernetes.protobuf")
    status = assert_status(resp, 403, "Forbidden")
    assert "scale-to-zero-in-production" in status["message"] and "could not be read" in status["message"]
    assert "does not model" in status["message"]
    assert [line for line in env.seen(ns) if line.startswith("POST")] == []
