"""Audit events a SIEM built for kube-apiserver reads correctly: audit.k8s.io/v1 fields and types,
the apiserver's stage semantics, an audit policy in its own format, and no secret in any event."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, settled_text, start_gateway
from tests.gateway.conftest import send

# audit.k8s.io/v1 Event, from k8s.io/apiserver/pkg/apis/audit/v1/types.go: JSON name -> JSON type.
EVENT_FIELDS = {
    "kind": str, "apiVersion": str, "level": str, "auditID": str, "stage": str, "requestURI": str, "verb": str,
    "user": dict, "impersonatedUser": dict, "sourceIPs": list, "userAgent": str, "objectRef": dict,
    "responseStatus": dict, "requestObject": (dict, list), "responseObject": (dict, list),
    "requestReceivedTimestamp": str, "stageTimestamp": str, "annotations": dict,
}
USER_FIELDS = {"username": str, "uid": str, "groups": list, "extra": dict}
OBJECT_REF_FIELDS = {"resource": str, "namespace": str, "name": str, "uid": str, "apiGroup": str, "apiVersion": str,
                     "resourceVersion": str, "subresource": str}
STATUS_FIELDS = {"kind": str, "apiVersion": str, "metadata": dict, "status": str, "message": str, "reason": str,
                 "details": dict, "code": int}
LEVELS = {"None", "Metadata", "Request", "RequestResponse"}
STAGES = {"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["quiet"]
  - level: None
    nonResourceURLs: ["/version", "/healthz*"]
  - level: RequestResponse
    resources: [{group: "", resources: ["secrets"]}]
  - level: Request
    userGroups: ["team-requests"]
    verbs: ["create"]
  - level: Metadata
    resources: [{group: "", resources: ["pods"]}]
    namespaces: ["watched"]
    omitStages: [ResponseStarted]
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["full"]}]
  - level: Metadata
"""


def _check(obj: dict[str, Any], fields: dict[str, Any], what: str) -> None:
    unknown = set(obj) - set(fields)
    assert not unknown, f"{what} has fields audit.k8s.io/v1 does not: {unknown}"
    for key, value in obj.items():
        assert isinstance(value, fields[key]), f"{what}.{key} is a {type(value).__name__}"


def valid_event(e: dict[str, Any]) -> None:
    _check(e, EVENT_FIELDS, "Event")
    assert (e["kind"], e["apiVersion"]) == ("Event", "audit.k8s.io/v1")
    assert e["level"] in LEVELS and e["stage"] in STAGES
    uuid.UUID(e["auditID"])
    for key in ("user", "impersonatedUser"):
        if key in e:
            _check(e[key], USER_FIELDS, key)
            assert all(isinstance(g, str) for g in e[key].get("groups", []))
    if "objectRef" in e:
        _check(e["objectRef"], OBJECT_REF_FIELDS, "objectRef")
    if "responseStatus" in e:
        _check(e["responseStatus"], STATUS_FIELDS, "responseStatus")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in e["annotations"].items())
    assert MICRO_TIME.match(e["requestReceivedTimestamp"]) and MICRO_TIME.match(e["stageTimestamp"])


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    state = tmp_path_factory.mktemp("audit")
    upstream = harness.start(state / "emulator")
    policy = state / "audit-policy.yaml"
    policy.write_text(POLICY)
    gw = start_gateway(state / "gw", upstream, audit={"policy_file": str(policy), "max_object_bytes": 4096})
    yield gw
    gw.stop()
    upstream.stop()


def call(gw: GatewayHandle, method: str, path: str, user: str = "ada", groups: tuple[str, ...] = (
        "kubegate:cluster-admins",), body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    return send(gw.port, gw.ca_file, method, path, body=data, headers={
        "Authorization": f"Bearer {gw.token(user, groups)}", "Content-Type": "application/json", **(headers or {})})


def events_of(gw: GatewayHandle, resp: Any) -> list[dict[str, Any]]:
    return [e for e in gw.audit_events() if e["auditID"] == resp.headers["audit-id"]]


def test_every_event_has_audit_v1_fields_and_types(gw: GatewayHandle, kubectl_path: str, tmp_path: Path) -> None:
    kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "ada"))
    kubectl("create", "namespace", "typed")
    kubectl("create", "configmap", "c", "-n", "typed", "--from-literal=k=v")
    kubectl("get", "configmaps", "-n", "typed", "-w", "--request-timeout=1s", check=False)
    kubectl("delete", "configmap", "c", "-n", "typed")
    kubectl("--as=bob", "get", "pods", check=False)
    send(gw.port, gw.ca_file, "GET", "/api/v1/pods")  # no token
    events = gw.audit_events()
    assert len(events) >= 6
    for e in events:
        valid_event(e)
        assert "impersonatedUser" not in e  # the caller is `user`; kubegate impersonates for no caller


def test_stages_follow_the_apiserver(gw: GatewayHandle) -> None:
    get = call(gw, "GET", "/api/v1/namespaces")
    assert [e["stage"] for e in events_of(gw, get)] == ["ResponseComplete"]
    watch = call(gw, "GET", "/api/v1/namespaces?watch=1&timeoutSeconds=1")
    assert [e["stage"] for e in events_of(gw, watch)] == ["ResponseStarted", "ResponseComplete"]


def test_a_refused_caller_with_a_valid_token_is_named(gw: GatewayHandle) -> None:
    resp = call(gw, "GET", "/api/v1/pods", user="alice", headers={"Impersonate-User": "admin"})
    assert resp.status == 403
    (event,) = events_of(gw, resp)
    assert event["user"]["username"] == "alice"


def test_authorization_annotations_name_the_decision_and_the_policy_revision(gw: GatewayHandle) -> None:
    allowed = call(gw, "GET", "/api/v1/namespaces")
    denied = call(gw, "DELETE", "/api/v1/namespaces/x", user="vic", groups=("kubegate:viewers",))
    (a,), (d,) = events_of(gw, allowed), events_of(gw, denied)
    assert a["annotations"]["authorization.k8s.io/decision"] == "allow"
    assert d["annotations"]["authorization.k8s.io/decision"] == "forbid"
    assert d["annotations"]["authorization.k8s.io/reason"] == "no rule allows it"
    assert d["annotations"]["kubegate.io/authz-rule"] == "none"
    assert a["annotations"]["kubegate.io/authz-rule"] == "admins-all-resources"  # by id, never by line
    assert re.fullmatch(r"[0-9a-f]{16}", a["annotations"]["kubegate.io/policy-revision"])
    assert re.fullmatch(r"[0-9a-f]{16}", a["annotations"]["kubegate.io/gates-revision"])
    # Refused before authorization (no token): the revisions in force are still named.
    assert send(gw.port, gw.ca_file, "GET", "/api/v1/namespaces").status == 401
    unauthenticated = [e for e in gw.audit_events() if e["responseStatus"]["code"] == 401][-1]
    assert unauthenticated["annotations"]["kubegate.io/gates-revision"] == a["annotations"]["kubegate.io/gates-revision"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics").read().decode()
    revision = a["annotations"]["kubegate.io/policy-revision"]
    assert f'kubegate_policy_revision{{policy="authz",revision="{revision}"}} 1.0' in metrics


def test_kubegates_own_objects_are_events_with_real_verbs(gw: GatewayHandle) -> None:
    resp = call(gw, "POST", "/kubegate/v1/accessrequests", user="dan", groups=("team-shop",),
                body={"role": "developer", "cluster": "emu", "namespace": "shop", "durationSeconds": 600,
                      "reason": "INC-1"})
    assert resp.status == 201
    own = [e for e in gw.audit_events() if e.get("annotations", {}).get("kubegate.io/event") == "requested"]
    assert own, "the access request was not recorded"
    e = own[-1]
    valid_event(e)
    assert (e["verb"], e["objectRef"]["resource"], e["objectRef"]["apiGroup"]) == \
        ("create", "accessrequests", "kubegate.io")


@pytest.mark.parametrize(("case", "level"), [
    pytest.param("users", None, id="users-none"),
    pytest.param("nonResourceURLs", None, id="non-resource-none"),
    pytest.param("resources", "RequestResponse", id="resources"),
    pytest.param("userGroups+verbs", "Request", id="user-groups-and-verbs"),
    pytest.param("namespaces+omitStages", "Metadata", id="namespaces-and-omit-stages"),
    pytest.param("resourceNames", "RequestResponse", id="resource-names"),
    pytest.param("default", "Metadata", id="last-rule"),
])
def test_the_audit_policy_decides_each_level(gw: GatewayHandle, case: str, level: str | None) -> None:
    ns = f"pol-{uuid.uuid4().hex[:6]}"
    assert call(gw, "POST", "/api/v1/namespaces", body={"metadata": {"name": ns}}).status == 201
    if case == "users":
        resp = call(gw, "GET", "/api/v1/namespaces", user="quiet")
    elif case == "nonResourceURLs":
        resp = call(gw, "GET", "/version")
    elif case == "resources":
        resp = call(gw, "GET", f"/api/v1/namespaces/{ns}/secrets")
    elif case == "userGroups+verbs":
        resp = call(gw, "POST", f"/api/v1/namespaces/{ns}/configmaps", user="rey",
                    groups=("kubegate:cluster-admins", "team-requests"),
                    body={"metadata": {"name": "c"}, "data": {"k": "v"}})
    elif case == "namespaces+omitStages":
        resp = call(gw, "GET", "/api/v1/namespaces/watched/pods?watch=1&timeoutSeconds=1")
    elif case == "resourceNames":
        call(gw, "POST", f"/api/v1/namespaces/{ns}/configmaps", body={"metadata": {"name": "full"}, "data": {"k": "v"}})
        resp = call(gw, "GET", f"/api/v1/namespaces/{ns}/configmaps/full")
    else:
        resp = call(gw, "GET", f"/api/v1/namespaces/{ns}/services")
    assert resp.status in (200, 201), resp.body
    found = events_of(gw, resp)
    if level is None:
        assert found == []
        return
    assert {e["level"] for e in found} == {level}
    if case == "namespaces+omitStages":
        assert [e["stage"] for e in found] == ["ResponseComplete"]  # ResponseStarted omitted
    if case == "userGroups+verbs":
        assert found[-1]["requestObject"]["data"] == {"k": "v"} and "responseObject" not in found[-1]
    if case == "resourceNames":
        assert found[-1]["responseObject"]["data"] == {"k": "v"}


def test_no_secret_value_or_token_reaches_the_log(gw: GatewayHandle, kubectl_path: str, tmp_path: Path) -> None:
    password, token = "hunter2-" + uuid.uuid4().hex, gw.token("ada")
    kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "ada"))
    kubectl("create", "namespace", "vault")
    kubectl("create", "secret", "generic", "db", "-n", "vault", f"--from-literal=password={password}")
    kubectl("get", "secret", "db", "-n", "vault", "-o", "yaml")
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "applied", "namespace": "vault"},
        "stringData": {"password": password}}))
    call(gw, "PATCH", "/api/v1/namespaces/vault/secrets/db", body={"data": {
        "password": base64.b64encode(password.encode()).decode()}},
        headers={"Content-Type": "application/merge-patch+json"})
    send(gw.port, gw.ca_file, "GET", f"/api/v1/namespaces?access_token={password}",
         headers={"Authorization": f"Bearer {token}"})
    log = settled_text(gw.settings.audit_path)
    for secret in (password, base64.b64encode(password.encode()).decode(), token):
        assert secret not in log
    secrets = [e for e in gw.audit_events() if e.get("objectRef", {}).get("resource") == "secrets"
               and e["level"] == "RequestResponse" and e["verb"] == "create"]
    written = [e["requestObject"] for e in secrets]  # keys stay, so an auditor sees what was set
    assert {"password": "<redacted by kubegate>"} in [o.get("data") for o in written]  # kubectl create
    assert {"password": "<redacted by kubegate>"} in [o.get("stringData") for o in written]  # kubectl apply


def test_large_objects_are_left_out_with_a_marker(gw: GatewayHandle) -> None:
    ns = f"big-{uuid.uuid4().hex[:6]}"
    call(gw, "POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    resp = call(gw, "POST", f"/api/v1/namespaces/{ns}/configmaps", user="rey",
                groups=("kubegate:cluster-admins", "team-requests"),
                body={"metadata": {"name": "big"}, "data": {"k": "x" * 10000}})
    (event,) = events_of(gw, resp)
    assert "requestObject" not in event
    assert "left out" in event["annotations"]["kubegate.io/request-object"]


@pytest.mark.parametrize(("method", "path", "verb", "ref"), [
    pytest.param("GET", "/api/v1/namespaces/default/secrets", "list",
                 {"resource": "secrets", "namespace": "default", "apiVersion": "v1"}, id="list-secrets"),
    pytest.param("GET", "/api/v1/namespaces/default/secrets?watch=1", "watch",
                 {"resource": "secrets", "namespace": "default", "apiVersion": "v1"}, id="watch"),
    pytest.param("DELETE", "/apis/apps/v1/namespaces/shop/deployments/web", "delete",
                 {"resource": "deployments", "namespace": "shop", "name": "web", "apiGroup": "apps", "apiVersion": "v1"},
                 id="delete"),
    pytest.param("GET", "/clusters/emu/api/v1/namespaces/kube-system/secrets/token", "get",
                 {"resource": "secrets", "namespace": "kube-system", "name": "token", "apiVersion": "v1"},
                 id="cluster-prefix"),
])
def test_an_unauthenticated_request_is_recorded_with_its_verb_and_object(
        gw: GatewayHandle, method: str, path: str, verb: str, ref: dict[str, str]) -> None:
    """As kube-apiserver records failed authentication: what was asked, so anonymous probing shows up
    in `kubegate audit search --verb list --resource secrets`."""
    answer = send(gw.port, gw.ca_file, method, path)
    assert answer.status == 401
    (event,) = events_of(gw, answer)
    assert event["verb"] == verb and event["objectRef"] == ref
    assert event["responseStatus"]["code"] == 401 and event["user"]["username"] == "system:anonymous"
    found = subprocess.run([sys.executable, "-m", "kubegate", "audit", "search", str(gw.settings.audit_path),
                            "--verb", verb, "--resource", ref["resource"], "-o", "json"],
                           capture_output=True, text=True, timeout=60)
    assert event["auditID"] in found.stdout


def test_a_request_that_cannot_be_read_is_still_recorded(gw: GatewayHandle) -> None:
    answer = send(gw.port, gw.ca_file, "GET", "/api/v1/namespaces/default/pods?labelSelector=%zz")
    (event,) = events_of(gw, answer)
    assert event["verb"] == "get" and "objectRef" not in event and event["responseStatus"]["code"] == answer.status


def test_tail_and_search_say_what_happened_and_by_what(tmp_path: Path) -> None:
    """An allowed request reads "allowed", kubegate's own API "answered by kubegate", a refusal names
    the stage and the rule, a held change its ticket; search filters by stage and rule and sums up."""
    upstream = harness.start(tmp_path / "emulator")
    rules = "rules:\n  - id: no-cm-deletes\n    outcome: require-approval\n    match: {resources: [configmaps], verbs: [delete]}\n"
    gw = start_gateway(tmp_path / "gw", upstream, gate_files={"rules.yaml": rules})
    try:
        ada, vic = gw.token("ada"), gw.token("vic", ["kubegate:viewers"])
        assert send(gw.port, gw.ca_file, "GET", "/api/v1/namespaces/default/configmaps",
                    headers={"Authorization": f"Bearer {ada}"}).status == 200
        assert send(gw.port, gw.ca_file, "GET", "/kubegate/v1/breakers",
                    headers={"Authorization": f"Bearer {ada}"}).status == 200
        assert send(gw.port, gw.ca_file, "GET", "/api/v1/namespaces/default/secrets",
                    headers={"Authorization": f"Bearer {vic}"}).status == 403
        assert send(gw.port, gw.ca_file, "DELETE", "/api/v1/namespaces/default/configmaps/x",
                    headers={"Authorization": f"Bearer {ada}"}).status == 403

        def audit(*args: str) -> str:
            out = subprocess.run([sys.executable, "-m", "kubegate", "audit", *args], capture_output=True, text=True,
                                 timeout=60)
            assert out.returncode == 0, out.stderr
            return out.stdout
        lines = audit("tail", str(gw.settings.audit_path), "-n", "10").splitlines()

        def the(what: str) -> str:
            found = [ln for ln in lines if what in ln and " ada " in ln or what in ln and " vic " in ln]
            assert found, (what, lines)
            return found[-1]
        assert the(" list             configmaps default/").endswith("configmaps default/  allowed")
        assert the("/kubegate/v1/breakers").endswith("answered by kubegate (breaker-api)")
        assert the(" secrets ").endswith("refused by authz (secrets-need-secret-reader)")
        assert " held for approval by approvals (no-cm-deletes): ticket " in the("configmaps default/x")
        found = audit("search", str(gw.settings.audit_path), "--stage", "authz")
        assert "secrets" in found and "configmaps" not in found
        found = audit("search", str(gw.settings.audit_path), "--rule", "no-cm-deletes")
        assert found.count("\n") == 1 and "held for approval" in found
        summary = json.loads(audit("search", str(gw.settings.audit_path), "--summary", "-o", "json"))
        assert summary["outcome"]["allowed"] >= 1 and summary["outcome"]["refused by authz"] == 1
        assert summary["rule"]["no-cm-deletes"] == 1 and summary["user"]["vic"] == 1
    finally:
        gw.stop()
        upstream.stop()
