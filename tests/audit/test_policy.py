"""The audit policy file: kube-apiserver's format read with every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubegate.audit.policy import Attributes, PolicyError, load
from kubegate.audit.redact import REDACTED, redact, redact_uri


def test_a_broken_policy_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("""
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [Sometimes]
rules:
  - level: Everything
  - level: Metadata
    verbs: get
  - level: Request
    resources: [{group: "", kinds: [pods]}]
  - level: Metadata
    nonResourceURLs: ["/version"]
    namespaces: [a]
  - level: None
    colour: blue
""")
    with pytest.raises(PolicyError) as err:
        load(path)
    report = str(err.value)
    assert report.startswith(f"6 problem(s) in {path}")
    for expected in ("unknown stage 'Sometimes'", "rules[0]: level must be one of", "rules[1]: verbs must be a list",
                     "rules[2].resources[0]: keys are group, resources, resourceNames",
                     "rules[3]: nonResourceURLs cannot be combined", "rules[4]: unknown key 'colour'"):
        assert expected in report


def test_cluster_scoped_objects_match_the_empty_namespace(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n'
                    '  - {level: RequestResponse, namespaces: [""]}\n  - {level: Metadata}\n')
    policy = load(path)
    node = Attributes(user="a", groups=(), verb="get", is_resource=True, resource="nodes", name="n1")
    pod = Attributes(user="a", groups=(), verb="get", is_resource=True, resource="pods", namespace="x")
    assert policy.decide(node).level == "RequestResponse" and policy.decide(pod).level == "Metadata"


def test_redaction_of_tokens_and_secrets() -> None:
    assert redact_uri("/api/v1/pods?access_token=abc&limit=5") == "/api/v1/pods?access_token=REDACTED&limit=5"
    assert redact_uri("/api/v1/pods?limit=5") == "/api/v1/pods?limit=5"
    token_request = {"kind": "TokenRequest", "status": {"token": "eyJ...", "expirationTimestamp": "t"}}
    assert redact(token_request)["status"] == {"token": REDACTED, "expirationTimestamp": "t"}
    secret_list = {"kind": "SecretList", "items": [{"kind": "Secret", "data": {"a": "YQ=="},
                                                    "metadata": {"annotations": {
                                                        "kubectl.kubernetes.io/last-applied-configuration": "{..}"}}}]}
    item = redact(secret_list)["items"][0]
    assert item["data"] == {"a": REDACTED}
    assert item["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == REDACTED
    patch_ops = [{"op": "replace", "path": "/data/a", "value": "YQ=="}]
    assert redact(patch_ops, resource="secrets") == [{"op": "replace", "path": "/data/a", "value": REDACTED}]
    configured = redact({"spec": {"env": [{"name": "X"}]}}, fields=("spec.env",))
    assert configured == {"spec": {"env": REDACTED}}


def test_serve_refuses_a_broken_audit_policy_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    from kubegate import pki
    from tests.conftest import write_gateway_config

    policy = tmp_path / "audit-policy.yaml"
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(pki.make_ca("test").cert_pem)
    config = write_gateway_config(tmp_path / "gw", [{"name": "c", "server": "https://127.0.0.1:1", "token": "x",
                                                     "ca_file": str(ca)}], audit={"policy_file": str(policy)})
    proc = subprocess.run([sys.executable, "-m", "kubegate", "serve", "-c", str(config)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"1 problem(s) in {policy}" in proc.stderr and "rules[0]: level must be one of" in proc.stderr
    assert "Traceback" not in proc.stderr
