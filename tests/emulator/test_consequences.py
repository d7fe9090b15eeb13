"""What the emulator does after a change, as the cluster's controllers would: workloads own
ReplicaSets and pods (opt-in), deletes collect dependents by ownerReference as their propagation
policy says, a claim's delete releases its volume by reclaim policy, PodDisruptionBudgets report
their status and evictions honour them."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from kubegate.emulator import harness
from tests.emulator.conftest import Raw

DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
RS = "/apis/apps/v1/namespaces/default/replicasets"
PODS = "/api/v1/namespaces/default/pods"


@pytest.fixture
def ctl(tmp_path: Any) -> Iterator[Raw]:
    running = harness.start(tmp_path / "emulator", controllers=True)
    yield Raw(running, running.admin_token)
    running.stop()


def web(replicas: int = 3, image: str = "web:1") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "w", "image": image}]}}}}


def names(raw: Raw, path: str) -> list[str]:
    code, body = raw.request("GET", path)
    assert code == 200, body
    return sorted(i["metadata"]["name"] for i in body["items"])


def test_a_deployment_owns_a_replicaset_that_owns_its_pods(ctl: Raw) -> None:
    assert ctl.request("POST", DEPLOYS, web())[0] == 201
    (rs,) = ctl.request("GET", RS)[1]["items"]
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment" and rs["spec"]["replicas"] == 3
    pods = ctl.request("GET", PODS)[1]["items"]
    assert len(pods) == 3 and all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in pods)
    ctl.request("PATCH", f"{DEPLOYS}/web", {"spec": {"replicas": 1}}, content_type="application/merge-patch+json")
    assert len(names(ctl, PODS)) == 1
    ctl.request("PATCH", f"{DEPLOYS}/web", {"spec": {"template": {"spec": {"containers": [{"name": "w", "image": "web:2"}]}}}},
                content_type="application/strategic-merge-patch+json")
    replicasets = ctl.request("GET", RS)[1]["items"]
    assert sorted(r["spec"]["replicas"] for r in replicasets) == [0, 1]  # the old template scaled away


@pytest.mark.parametrize("policy, left", [("Background", ([], [])), ("Foreground", ([], [])),
                                          ("Orphan", (["rs"], ["pod", "pod", "pod"]))])
def test_a_delete_collects_dependents_as_its_propagation_policy_says(ctl: Raw, policy: str,
                                                                     left: tuple[list[str], list[str]]) -> None:
    ctl.request("POST", DEPLOYS, web())
    code, _ = ctl.request("DELETE", f"{DEPLOYS}/web", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                       "propagationPolicy": policy})
    assert code == 200
    replicasets, pods = ctl.request("GET", RS)[1]["items"], ctl.request("GET", PODS)[1]["items"]
    assert (["rs"] * len(replicasets), ["pod"] * len(pods)) == left
    assert all("ownerReferences" not in o["metadata"] for o in replicasets)  # orphans own no reference to it


def test_a_dry_run_delete_collects_nothing(ctl: Raw) -> None:
    ctl.request("POST", DEPLOYS, web())
    assert ctl.request("DELETE", f"{DEPLOYS}/web?dryRun=All")[0] == 200
    assert len(names(ctl, PODS)) == 3 and len(names(ctl, RS)) == 1


@pytest.mark.parametrize("reclaim, volume_left", [("Delete", False), ("Retain", True)])
def test_a_claims_delete_releases_its_volume_by_reclaim_policy(raw: Raw, reclaim: str, volume_left: bool) -> None:
    _, claim = raw.request("POST", "/api/v1/namespaces/default/persistentvolumeclaims",
                           {"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1"}})
    raw.request("POST", "/api/v1/persistentvolumes", {"metadata": {"name": "pv-1"}, "spec": {
        "persistentVolumeReclaimPolicy": reclaim, "claimRef": {"namespace": "default", "name": "data",
                                                               "uid": claim["metadata"]["uid"]}}})
    raw.request("DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/data")
    code, pv = raw.request("GET", "/api/v1/persistentvolumes/pv-1")
    assert (code == 200) == volume_left
    if volume_left:
        assert pv["status"]["phase"] == "Released"


def test_a_disruption_budget_reports_its_status_and_evictions_honour_it(ctl: Raw) -> None:
    ctl.request("POST", DEPLOYS, web(replicas=2))
    ctl.request("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                {"metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}})
    _, pdb = ctl.request("GET", "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web")
    assert {k: pdb["status"][k] for k in ("expectedPods", "currentHealthy", "desiredHealthy", "disruptionsAllowed")} \
        == {"expectedPods": 2, "currentHealthy": 2, "desiredHealthy": 2, "disruptionsAllowed": 0}
    pod = names(ctl, PODS)[0]
    code, status = ctl.request("POST", f"{PODS}/{pod}/eviction", {"apiVersion": "policy/v1", "kind": "Eviction",
                                                                  "metadata": {"name": pod}})
    assert code == 429 and "disruption budget" in status["message"]
    ctl.request("PATCH", f"{DEPLOYS}/web", {"spec": {"replicas": 3}}, content_type="application/merge-patch+json")
    assert ctl.request("POST", f"{PODS}/{pod}/eviction", {"apiVersion": "policy/v1", "kind": "Eviction",
                                                          "metadata": {"name": pod}})[0] == 201


def test_kubectl_get_prints_the_columns_a_cluster_prints(ctl: Raw, kubectl_path: str, tmp_path: Any) -> None:
    import subprocess

    ctl.request("POST", DEPLOYS, web(replicas=2))
    kubeconfig = ctl.emu.kubeconfig(tmp_path / "kc")
    pods = subprocess.run([kubectl_path, "--kubeconfig", str(kubeconfig), "get", "pods"], capture_output=True,
                          text=True, timeout=60).stdout.splitlines()
    assert pods[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[1:4] for line in pods[1:]] == [["1/1", "Running", "0"]] * 2
    deploys = subprocess.run([kubectl_path, "--kubeconfig", str(kubeconfig), "get", "deployments"], capture_output=True,
                             text=True, timeout=60).stdout.splitlines()
    assert deploys[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploys[1].split()[:4] == ["web", "2/2", "2", "2"]


def test_kubectl_create_token_works_and_the_token_authenticates(raw: Raw, kubectl_path: str, tmp_path: Any) -> None:
    """README step 2 (the gateway's own credential) rehearsed on the emulator."""
    import subprocess

    raw.request("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "kubegate"}})
    kubeconfig = raw.emu.kubeconfig(tmp_path / "kc")
    made = subprocess.run([kubectl_path, "--kubeconfig", str(kubeconfig), "create", "token", "kubegate",
                           "--duration=1h"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    code, review = raw.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                               {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                               token=made.stdout.strip())
    assert code == 201 and review["status"]["userInfo"]["username"] == "system:serviceaccount:default:kubegate"
    assert raw.request("POST", "/api/v1/namespaces/default/serviceaccounts/nobody/token", {})[0] == 404
