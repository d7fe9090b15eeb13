"""The RBAC the gateway's identity needs: impersonation, and nothing else."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubegate.emulator import harness
from tests.conftest import Kubectl

MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "impersonator-rbac.yaml"


def test_clusterrole_grants_only_impersonation() -> None:
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"impersonate"}
    assert granted == {("", "users"), ("", "groups"), ("", "serviceaccounts"),
                       ("authentication.k8s.io", "uids"), ("authentication.k8s.io", "userextras/kubegate.io/session")}
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_manifest_applies_with_kubectl(fresh_upstream: harness.RunningEmulator, kubectl_path: str,
                                      tmp_path: Path) -> None:
    kubectl = Kubectl(kubectl_path, fresh_upstream.kubeconfig(tmp_path / "kc"))
    kubectl("create", "namespace", "kubegate-system")
    out = kubectl("apply", "-f", str(MANIFEST)).stdout
    assert "clusterrole.rbac.authorization.k8s.io/kubegate-impersonator created" in out
    assert "serviceaccount/kubegate created" in out
