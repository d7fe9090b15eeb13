"""Protobuf bodies as real kubectl sends them, decoded to what kubectl itself renders as JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kubegate.gateway.request import kubeproto
from kubegate.emulator import harness
from tests.conftest import Kubectl

# (kubectl arguments creating an object; resource path suffix of its POST)
TYPED_CREATES = [
    pytest.param(["create", "namespace", "pb-ns"], "/namespaces", id="namespace"),
    pytest.param(["create", "deployment", "d", "--image=nginx:1.27", "--replicas=3", "--port=8080"],
                 "/deployments", id="deployment"),
    pytest.param(["create", "deployment", "zero", "--image=nginx", "--replicas=0"], "/deployments",
                 id="deployment-zero-replicas"),
    pytest.param(["create", "configmap", "c", "--from-literal=a=b", "--from-literal=x=y"], "/configmaps",
                 id="configmap"),
    pytest.param(["create", "secret", "generic", "s", "--from-literal=p=q"], "/secrets", id="secret"),
    pytest.param(["create", "service", "clusterip", "svc", "--tcp=80:8080"], "/services", id="service"),
    pytest.param(["create", "job", "j", "--image=busybox", "--", "echo", "hi"], "/jobs", id="job"),
    pytest.param(["create", "serviceaccount", "sa"], "/serviceaccounts", id="serviceaccount"),
    pytest.param(["create", "role", "r", "--verb=get,list", "--resource=pods"], "/roles", id="role"),
    pytest.param(["create", "clusterrolebinding", "crb", "--clusterrole=cluster-admin", "--user=alice",
                  "--group=ops"], "/clusterrolebindings", id="clusterrolebinding"),
]


def _pruned(value: Any) -> Any:
    """Drop what JSON `omitempty` drops, so both renderings compare field for field."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


@pytest.fixture
def kubectl(fresh_upstream: harness.RunningEmulator, kubectl_path: str) -> Kubectl:
    return Kubectl(kubectl_path, fresh_upstream.kubeconfig(fresh_upstream.directory / "kubeconfig"))


def _sent_body(upstream: harness.RunningEmulator, suffix: str) -> bytes:
    posts = [r for r in upstream.requests if r.method == "POST" and r.path.endswith(suffix)]
    assert len(posts) == 1, [r.path for r in upstream.requests]
    assert posts[0].header("Content-Type") == [kubeproto.CONTENT_TYPE]
    return posts[0].body


@pytest.mark.kubectl
@pytest.mark.parametrize(("args", "suffix"), TYPED_CREATES)
def test_decoded_body_equals_kubectls_own_json(fresh_upstream: harness.RunningEmulator, kubectl: Kubectl,
                                               args: list[str], suffix: str) -> None:
    cut = args.index("--") if "--" in args else len(args)  # flags go before a container command
    expected = json.loads(kubectl(*args[:cut], "--dry-run=client", "-o", "json", *args[cut:]).stdout)
    fresh_upstream.clear_requests()
    kubectl(*args)
    decoded = kubeproto.decode(_sent_body(fresh_upstream, suffix))
    assert decoded.unknown == []
    assert (decoded.api_version, decoded.kind) == (expected["apiVersion"], expected["kind"])
    expected.pop("status", None)
    assert _pruned(decoded.obj) == _pruned(expected)


@pytest.mark.kubectl
def test_zero_replicas_survive_decoding(fresh_upstream: harness.RunningEmulator, kubectl: Kubectl) -> None:
    """replicas is a pointer field: an explicit 0 must not vanish like an omitted value."""
    kubectl("create", "deployment", "zero", "--image=nginx", "--replicas=0")
    assert kubeproto.decode(_sent_body(fresh_upstream, "/deployments")).obj["spec"]["replicas"] == 0


@pytest.mark.kubectl
def test_access_review_from_auth_can_i(fresh_upstream: harness.RunningEmulator, kubectl: Kubectl) -> None:
    kubectl("auth", "can-i", "delete", "pods", "-n", "kube-system")
    decoded = kubeproto.decode(_sent_body(fresh_upstream, "/selfsubjectaccessreviews"))
    assert decoded.obj["spec"]["resourceAttributes"] == {
        "namespace": "kube-system", "verb": "delete", "resource": "pods"}


def _frame(api_version: str, kind: str, raw: bytes) -> bytes:
    def ld(num: int, payload: bytes) -> bytes:
        return bytes([num << 3 | 2, len(payload)]) + payload
    type_meta = ld(1, api_version.encode()) + ld(2, kind.encode())
    return kubeproto.MAGIC + ld(1, type_meta) + ld(2, raw)


@pytest.mark.parametrize(("body", "message"), [
    pytest.param(b'{"kind":"Pod"}', "magic", id="json-not-protobuf"),
    pytest.param(kubeproto.MAGIC + b"\x0a\xff", "truncated", id="truncated-envelope"),
    pytest.param(_frame("v1", "Mystery", b""), "no protobuf schema for v1/Mystery", id="unknown-kind"),
    pytest.param(_frame("v1", "ConfigMap", b"\x0a\x05\x0a\x01"), "truncated", id="truncated-object"),
    pytest.param(_frame("v1", "ConfigMap", b"\x0b"), "wire type", id="bad-wire-type"),
])
def test_malformed_bodies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(kubeproto.ProtobufError, match=message):
        kubeproto.decode(body)


def test_fields_outside_the_schema_are_reported_not_dropped() -> None:
    # A ConfigMap carrying field 9, which ConfigMap does not have.
    raw = b"\x0a\x03\x0a\x01c" + bytes([9 << 3 | 2, 1]) + b"x"
    decoded = kubeproto.decode(_frame("v1", "ConfigMap", raw))
    assert decoded.obj["metadata"] == {"name": "c"}
    assert decoded.unknown == ["#9"]


def test_secret_data_is_base64_as_in_json() -> None:
    entry = b"\x0a\x01k\x12\x03\x00\xffv"
    raw = b"\x0a\x03\x0a\x01s" + bytes([2 << 3 | 2, len(entry)]) + entry
    decoded = kubeproto.decode(_frame("v1", "Secret", raw))
    assert base64.b64decode(decoded.obj["data"]["k"]) == b"\x00\xffv"
