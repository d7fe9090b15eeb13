"""Blast radius and availability checks, end to end: real kubectl through a gateway with the
starter rules, an emulated cluster whose workloads own ReplicaSets and pods. Each held change's
refusal and ticket (`kubegate approvals show`) carry the numbers; a risk webhook receives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, start_gateway, unique
from tests.gateway.gates.test_change import ReviewServer

STARTER_RULES = (Path(__file__).resolve().parents[3] / "policies" / "gates" / "rules.yaml").read_text()


class Cluster:
    def __init__(self, gw: GatewayHandle, upstream: harness.RunningEmulator, tmp: Path, kubectl_path: str,
                 checker: ReviewServer) -> None:
        self.gw, self.upstream, self.tmp, self.checker = gw, upstream, tmp, checker
        self.direct = Kubectl(kubectl_path, upstream.kubeconfig(tmp / "direct"))  # set-up, past every gate
        self.ada = Kubectl(kubectl_path, gw.kubeconfig(tmp / "ada", "ada"))
        self.sam_kubeconfig = gw.kubeconfig(tmp / "sam", "sam", ("kubegate:sre",))

    def apply(self, *objects: dict[str, Any]) -> None:
        self.direct("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def shop(self, replicas: int = 3, min_available: int | None = 2, namespace: str = "") -> str:
        """A namespace with Deployment web (REPLICAS pods) behind Service web, and PDB web."""
        ns = namespace or unique("shop")
        objects: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
             "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "web", "image": "shop/web:1.7"}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}]
        if min_available is not None:
            objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                            "metadata": {"name": "web", "namespace": ns},
                            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}}})
        self.apply(*objects)
        return ns

    def show(self, ticket: str) -> str:
        out = subprocess.run([sys.executable, "-m", "kubegate", "approvals", "show", ticket, "--kubeconfig",
                              str(self.sam_kubeconfig)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def ticket(self, ticket: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "kubegate", "approvals", "show", ticket, "-o", "json",
                              "--kubeconfig", str(self.sam_kubeconfig)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        found: dict[str, Any] = json.loads(out.stdout)
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, kubectl_path: str) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("blast")
    checker = ReviewServer(tmp)
    upstream = harness.start(tmp / "emulator", controllers=True)
    webhooks = f"""
webhooks:
  - name: inspection
    url: https://127.0.0.1:{checker.port}/review
    ca_file: {checker.ca_file}
    failure_policy: Fail
    match: {{namespaces: ["wh-ok*"]}}
"""
    gw = start_gateway(tmp / "gw", upstream, gate_files={"rules.yaml": STARTER_RULES, "webhooks.yaml": webhooks})
    try:
        yield Cluster(gw, upstream, tmp, kubectl_path, checker)
    finally:
        gw.stop()
        upstream.stop()
        checker.stop()


def ticket_of(stderr: str) -> str:
    assert "Approval ticket " in stderr, stderr
    return stderr.split("Approval ticket ")[1].split()[0]


def test_a_deployment_delete_takes_its_replicaset_and_pods_below_the_budget(cluster: Cluster) -> None:
    ns = cluster.shop()
    held = cluster.ada("delete", "deployment", "web", "-n", ns, check=False)
    assert held.returncode == 1
    assert "takes with it: 1 Deployment, 1 ReplicaSet, 3 Pods" in held.stderr
    assert "PDB web: 3 → 0 available, minAvailable 2" in held.stderr
    assert "rule below-disruption-budget" in held.stderr and "rule last-ready-replica-behind-service" in held.stderr
    ticket = ticket_of(held.stderr)
    shown = cluster.show(ticket)
    assert f"delete deployments.apps {ns}/web (propagation Background)" in shown
    assert "takes 3 Pod: web-" in shown and "takes 1 ReplicaSet: web-" in shown
    assert f"PDB {ns}/web: 3 → 0 available, minAvailable 2  VIOLATED" in shown
    assert f"Service {ns}/web: ready endpoints 3 → 0" in shown
    radius = cluster.ticket(ticket)["blastRadius"]
    assert {t["kind"]: t["count"] for t in radius["takes"]} == {"Deployment": 1, "ReplicaSet": 1, "Pod": 3}
    assert cluster.direct.json("get", "pods", "-n", ns)["items"]  # held: nothing deleted


def test_an_orphaning_delete_takes_the_deployment_alone(cluster: Cluster) -> None:
    ns = cluster.shop()
    done = cluster.ada("delete", "deployment", "web", "-n", ns, "--cascade=orphan")
    assert 'deployment.apps "web" deleted' in done.stdout
    (event,) = [e for e in cluster.gw.audit_events() if e["verb"] == "delete"
                and e["objectRef"].get("namespace") == ns]
    assert event["annotations"]["kubegate.io/blast-radius"] == "takes with it: 1 Deployment"
    assert len(cluster.direct.json("get", "pods", "-n", ns)["items"]) == 3  # orphans keep running


def test_a_scale_below_the_budget_names_the_numbers(cluster: Cluster) -> None:
    ns = cluster.shop()
    held = cluster.ada("scale", "deployment", "web", "-n", ns, "--replicas=1", check=False)
    assert held.returncode == 1
    assert "Deployment web: 3 → 1 replicas (3 → 1 ready)" in held.stderr
    assert "PDB web: 3 → 1 available, minAvailable 2" in held.stderr
    ok = cluster.ada("scale", "deployment", "web", "-n", ns, "--replicas=2")  # still at the budget: passes
    assert "scaled" in ok.stdout


def test_a_claim_whose_volume_is_deleted_with_it_needs_approval(cluster: Cluster) -> None:
    ns = cluster.shop(min_available=None)
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": ns},
                   "spec": {"volumeName": f"pv-{ns}", "accessModes": ["ReadWriteOnce"]}})
    claim = cluster.direct.json("get", "pvc", "data", "-n", ns)
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"pv-{ns}"},
                   "spec": {"persistentVolumeReclaimPolicy": "Delete", "capacity": {"storage": "1Gi"},
                            "claimRef": {"namespace": ns, "name": "data", "uid": claim["metadata"]["uid"]}}})
    held = cluster.ada("delete", "pvc", "data", "-n", ns, check=False)
    assert f"volume pv-{ns} of claim data is deleted with its data (reclaim policy Delete)" in held.stderr
    assert "rule delete-volume-data" in held.stderr
    assert f"volume pv-{ns} (claim data, reclaim Delete): DELETED with its data" in cluster.show(ticket_of(held.stderr))


def test_a_crd_with_live_resources_needs_approval(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com"},
                   "spec": {"group": "example.com", "scope": "Namespaced",
                            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                            "versions": [{"name": "v1", "served": True, "storage": True,
                                          "schema": {"openAPIV3Schema": {"type": "object",
                                                                         "x-kubernetes-preserve-unknown-fields": True}}}]}})
    ns = cluster.shop(min_available=None)
    cluster.apply(*({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": f"w{i}", "namespace": ns}}
                    for i in range(2)))
    held = cluster.ada("delete", "crd", "widgets.example.com", check=False)
    assert "2 custom resources are deleted with it" in held.stderr and "rule delete-crd-with-resources" in held.stderr
    assert "custom resources deleted with it: 2" in cluster.show(ticket_of(held.stderr))


def test_a_namespace_delete_counts_everything_in_it(cluster: Cluster) -> None:
    ns = cluster.shop()
    held = cluster.ada("delete", "namespace", ns, check=False)
    assert "rule delete-namespace" in held.stderr
    radius = cluster.ticket(ticket_of(held.stderr))["blastRadius"]
    taken = {t["kind"]: t["count"] for t in radius["takes"]}
    assert taken["Namespace"] == 1 and taken["Deployment"] == 1 and taken["ReplicaSet"] == 1 and taken["Pod"] == 3
    assert taken["Service"] == 1 and taken["PodDisruptionBudget"] == 1
    assert radius["namespaceWorkloads"] == 1 and radius["complete"]


def test_a_drain_that_leaves_a_zone_unschedulable_needs_approval(cluster: Cluster) -> None:
    try:
        cluster.ada("cordon", "emu-node-1")  # one of the zone's two: allowed
        # (kubectl cordon and drain print a refused cordon and may still exit 0: the message tells.)
        held = cluster.ada("drain", "emu-node-2", "--ignore-daemonsets", "--timeout=10s", check=False)
        assert "2 of 2 nodes of zone emu-a unschedulable (more than 1)" in held.stderr
        assert "rule unschedulable-nodes-in-a-zone" in held.stderr
        node = cluster.direct.json("get", "node", "emu-node-2")
        assert not node["spec"].get("unschedulable")  # held: not cordoned
    finally:
        cluster.direct("uncordon", "emu-node-1")


def test_a_risk_webhook_receives_the_blast_radius(cluster: Cluster) -> None:
    ns = cluster.shop(namespace=unique("wh-ok"), min_available=None)
    cluster.ada("scale", "deployment", "web", "-n", ns, "--replicas=2")
    (review,) = [r for r in cluster.checker.reviews if r["request"]["requestInfo"]["namespace"] == ns]
    radius = review["request"]["blastRadius"]
    assert radius["replicas"] == {"kind": "Deployment", "namespace": ns, "name": "web", "replicas_before": 3,
                                  "replicas_after": 2, "ready_before": 3, "ready_after": 2}
    assert [t for t in radius["takes"] if t["kind"] == "Pod"][0]["count"] == 1


def _preview(cluster: Cluster, kubectl_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(kubectl_path).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "HOME": str(cluster.tmp)}
    return subprocess.run([sys.executable, "-m", "kubegate", "preview", "--kubeconfig", str(cluster.tmp / "ada"),
                           *args], capture_output=True, text=True, timeout=120, env=env)


def _only_reads_and_dry_runs(cluster: Cluster) -> None:
    for r in cluster.upstream.requests:
        dry = "dryRun=All" in r.query or (r.method == "DELETE" and b'"dryRun": ["All"]' in (r.body or b""))
        assert r.method == "GET" or dry, f"{r.method} {r.path}?{r.query} reached the cluster"


def test_preview_of_a_held_delete_shows_it_and_changes_nothing(cluster: Cluster, kubectl_path: str) -> None:
    ns = cluster.shop()
    cluster.upstream.clear_requests()
    out = _preview(cluster, kubectl_path, "--", "kubectl", "delete", "deployment", "web", "-n", ns)
    assert out.returncode == 1, out.stderr
    assert "would need approval" in out.stderr and "No ticket was opened" in out.stderr  # kubectl's own error line
    assert f"DELETE deployments.apps {ns}/web: WOULD NEED APPROVAL" in out.stdout
    assert "takes 3 Pod: web-" in out.stdout and f"PDB {ns}/web: 3 → 0 available, minAvailable 2  VIOLATED" in out.stdout
    _only_reads_and_dry_runs(cluster)
    assert len(cluster.direct.json("get", "pods", "-n", ns)["items"]) == 3
    opened = [e for e in cluster.gw.audit_events() if e["annotations"].get("kubegate.io/approval-event") == "requested"]
    assert [e for e in opened if f" {ns}/web " in e["annotations"]["kubegate.io/approval-change"]] == []  # no ticket
    # (The same delete without the preview does open one, recorded the same way: the check can tell.)
    held = cluster.ada("delete", "deployment", "web", "-n", ns, check=False)
    opened = [e for e in cluster.gw.audit_events() if e["annotations"].get("kubegate.io/approval-event") == "requested"]
    assert [e["objectRef"]["name"] for e in opened if f" {ns}/web " in e["annotations"]["kubegate.io/approval-change"]] \
        == [ticket_of(held.stderr)]


def test_preview_of_a_manifest_lists_the_fields_it_changes(cluster: Cluster, kubectl_path: str) -> None:
    ns = cluster.shop()
    deployment = cluster.direct.json("get", "deployment", "web", "-n", ns)
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
                "spec": {**deployment["spec"], "template": {**deployment["spec"]["template"], "spec": {
                    "containers": [{"name": "web", "image": "shop/web:1.8"}]}}}}
    (cluster.tmp / "web.yaml").write_text(yaml.safe_dump(manifest))
    cluster.upstream.clear_requests()
    out = _preview(cluster, kubectl_path, "-f", str(cluster.tmp / "web.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"PATCH deployments.apps {ns}/web: would pass" in out.stdout
    assert "changes fields: " in out.stdout and "spec.template.spec.containers[0].image" in out.stdout
    _only_reads_and_dry_runs(cluster)
    live = cluster.direct.json("get", "deployment", "web", "-n", ns)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1.7"  # unchanged
    report = json.loads(_preview(cluster, kubectl_path, "-o", "json", "-f", str(cluster.tmp / "web.yaml")).stdout)
    (entry,) = report["entries"]
    # What the cluster would store, against the live object: the image, and apply's own annotation.
    assert entry["outcome"] == "allowed" and entry["blastRadius"]["changedFields"] == [
        "metadata.annotations.kubectl.kubernetes.io/last-applied-configuration",
        "spec.template.spec.containers[0].image"]


def test_a_preview_path_cannot_exec_and_a_bad_id_is_404(cluster: Cluster) -> None:
    token = cluster.gw.token("ada")
    for path, code in (("/kubegate/preview/UPPER-case/api/v1/namespaces", 404),
                       ("/kubegate/preview/0123456789abcdef/kubegate/v1/brakes", 404),  # own API: never previewed
                       ("/kubegate/preview/0123456789abcdef/api/v1/namespaces/default/pods/x/exec?command=sh", 403)):
        answer = requests.post(cluster.gw.url + path, headers={"Authorization": f"Bearer {token}"},
                               verify=str(cluster.gw.ca_file), timeout=10)
        assert answer.status_code == code, answer.text


def test_the_cluster_is_read_as_the_requester(cluster: Cluster) -> None:
    ns = cluster.shop()
    cluster.upstream.clear_requests()
    cluster.ada("delete", "deployment", "web", "-n", ns, check=False)
    reads = [r for r in cluster.upstream.requests if r.method == "GET"]
    assert len(reads) >= 4 and all(r.user is not None and r.user.username == "ada" for r in reads)


def test_a_radius_past_its_read_budget_says_at_least_and_every_check_applies(cluster: Cluster, tmp_path: Path,
                                                                              kubectl_path: str) -> None:
    ns = cluster.shop(min_available=None)
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other", "namespace": ns},
                   "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}})
    tight = start_gateway(tmp_path / "gw", cluster.upstream, gate_files={"rules.yaml": STARTER_RULES},
                          gates={"policy_dir": str(tmp_path / "gw" / "gates"), "blast_radius_reads": 2})
    try:
        ada = Kubectl(kubectl_path, tight.kubeconfig(tmp_path / "ada", "ada"))
        held = ada("delete", "deployment", "web", "-n", ns, check=False)
        # Two reads (the Deployment, its ReplicaSets) and the budget is spent before the pods: whatever
        # they would have shown, the checks apply.
        assert "the blast radius could not be read whole (read budget of 2 calls spent" in held.stderr
        assert "rule below-disruption-budget" in held.stderr and "rule last-ready-replica-behind-service" in held.stderr
        assert "Approval ticket" in held.stderr and "a person decides" in held.stderr  # the deny rule (Kruise) too
        assert "takes with it: at least 1 Deployment, at least 1 ReplicaSet" in held.stderr
    finally:
        tight.stop()


def test_preview_of_an_ingress_delete_names_the_services_it_stops_routing_to(cluster: Cluster,
                                                                            kubectl_path: str) -> None:
    ns = cluster.shop(min_available=None)
    cluster.apply({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": ns},
                   "spec": {"rules": [{"host": "shop.example", "http": {"paths": [
                       {"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    out = _preview(cluster, kubectl_path, "--", "kubectl", "delete", "ingress", "web", "-n", ns)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"DELETE ingresses.networking.k8s.io {ns}/web: would pass" in out.stdout
    assert "Ingress web stops routing to Service web (3 ready endpoints)" in out.stdout
    assert cluster.direct.json("get", "ingress", "web", "-n", ns)["metadata"]["name"] == "web"  # still there
