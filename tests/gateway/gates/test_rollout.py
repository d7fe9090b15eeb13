"""Rollout order across clusters, with real kubectl against three emulated clusters behind one
gateway (staging-1 and staging-2, then prod-1): a new image reaches prod only after it has run
ready for staging's soak in both staging clusters — however the change is written (set image,
apply, patch) — or with a ticket; a rollback and a scale pass. The emulators' clocks are the
test's, so "ready for 12 min of 30" is driven, not waited for."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, emulator_cluster, start_gateway
from tests.gateway.gates.test_change import ReviewServer

ROLLOUTS = """
rollouts:
  - name: shop
    stages:
      - {name: staging, clusters: ["staging-*"], soak: 30m}
      - {name: prod, clusters: ["prod-*"]}
    workloads: {namespaces: [shop]}
  - name: payments
    stages:
      - {name: staging, clusters: ["staging-*"], verify: [inspection]}
      - {name: prod, clusters: ["prod-*"]}
    workloads: {namespaces: ["wh-*"]}
"""


def webhooks(port: int, ca: Path) -> str:
    return f"""
webhooks:
  - name: inspection
    url: https://127.0.0.1:{port}/review
    ca_file: {ca}
    match: {{namespaces: ["nothing-but-verification"]}}
"""


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def deployment(image: str, namespace: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


class Fleet:
    def __init__(self, gw: GatewayHandle, emulators: dict[str, harness.RunningEmulator], clocks: dict[str, Clock],
                 tmp: Path, kubectl_path: str, checker: ReviewServer) -> None:
        self.gw, self.emulators, self.clocks, self.tmp, self.kubectl_path = gw, emulators, clocks, tmp, kubectl_path
        self.checker = checker

    def kubectl(self, cluster: str, user: str = "ada", groups: tuple[str, ...] = ("kubegate:cluster-admins",)) -> Kubectl:
        path = self.tmp / f"{user}-{cluster}"
        self.gw.kubeconfig(path, user, groups, server=f"{self.gw.url}/clusters/{cluster}")
        return Kubectl(self.kubectl_path, path)

    def set_image(self, cluster: str, image: str, *, minutes_ago: float = 0, check: bool = True) -> Any:
        self.clocks[cluster].offset = -minutes_ago * 60  # the cluster records the change as made then
        try:
            return self.kubectl(cluster)("-n", "shop", "set", "image", "deployment/web", f"web={image}", check=check)
        finally:
            self.clocks[cluster].offset = 0

    def status(self, cluster: str, **changes: Any) -> None:
        """Drive the Deployment's status in CLUSTER as its controller would report it."""
        emu = self.emulators[cluster]
        rt = emu.call(lambda: emu.emulator.registry.lookup("apps", "v1", "deployments"))
        current = emu.call(lambda: emu.emulator.store.get(rt, "shop", "web"))
        current["status"].update(changes)
        emu.call(lambda: emu.emulator.store.update(rt, "shop", "web", current, subresource="status"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, kubectl_path: str) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("rollout")
    checker = ReviewServer(tmp)
    clocks = {name: Clock() for name in ("staging-1", "staging-2", "prod-1")}
    emulators = {name: harness.start(tmp / name, controllers=True, clock=clock) for name, clock in clocks.items()}
    gw = start_gateway(tmp / "gw", emulators["prod-1"], clusters=[emulator_cluster(e, n) for n, e in emulators.items()],
                       gate_files={"rollouts.yaml": ROLLOUTS, "webhooks.yaml": webhooks(checker.port, checker.ca_file)})
    fleet = Fleet(gw, emulators, clocks, tmp, kubectl_path, checker)
    try:
        for name in emulators:  # a first deploy passes everywhere
            for ns in ("shop", "wh-ok-pay", "wh-deny-pay"):
                fleet.kubectl(name)("create", "namespace", ns)
                fleet.kubectl(name)("apply", "-f", "-", input=yaml.safe_dump(deployment("shop/web:1.7", ns)))
        yield fleet
    finally:
        gw.stop()
        checker.stop()
        for e in emulators.values():
            e.stop()


def _ticket(stderr: str) -> str:
    return stderr.split("Approval ticket ")[1].split()[0]


def test_a_new_image_reaches_prod_only_after_staging_ran_it_ready_for_the_soak(fleet: Fleet) -> None:
    held = fleet.set_image("prod-1", "shop/web:1.8", check=False)
    assert held.returncode == 1
    assert ("rollout shop: a new pod template for stage prod must first run ready in the earlier stages: "
            "staging/staging-1: image shop/web:1.8 not seen (it runs shop/web:1.7); "
            "staging/staging-2: image shop/web:1.8 not seen (it runs shop/web:1.7)") in held.stderr

    fleet.set_image("staging-1", "shop/web:1.8", minutes_ago=40)  # staging itself is the first stage: it passes
    fleet.set_image("staging-2", "shop/web:1.8", minutes_ago=12)
    fleet.status("staging-2", readyReplicas=1)
    held = fleet.set_image("prod-1", "shop/web:1.8", check=False)
    assert "staging/staging-2: 1 of 3 replicas ready on it" in held.stderr and "staging-1:" not in held.stderr

    fleet.status("staging-2", readyReplicas=3)
    held = fleet.set_image("prod-1", "shop/web:1.8", check=False)
    assert "staging/staging-2: ready for 12 min of 30" in held.stderr

    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 31 * 60))
    fleet.status("staging-2", conditions=[{"type": "Available", "status": "True", "lastTransitionTime": since}])
    assert "image updated" in fleet.set_image("prod-1", "shop/web:1.8").stdout
    events = [e for e in fleet.gw.audit_events() if e["verb"] == "patch" and "prod-1" in e["requestURI"]
              and e["responseStatus"]["code"] == 200]
    assert events[-1]["annotations"]["kubegate.io/rollout"] == "shop: ran in every earlier stage"


def test_apply_and_patch_are_held_the_same_and_a_ticket_passes_once(fleet: Fleet) -> None:
    prod = fleet.kubectl("prod-1")
    applied = prod("apply", "-f", "-", input=yaml.safe_dump(deployment("shop/web:1.9")), check=False)
    assert "staging/staging-1: image shop/web:1.9 not seen" in applied.stderr
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "shop/web:1.9"}]
    patched = prod("-n", "shop", "patch", "deployment", "web", "--type=json", "-p", json.dumps(patch), check=False)
    assert "staging/staging-2: image shop/web:1.9 not seen" in patched.stderr
    sam = fleet.tmp / "sam-cli"
    fleet.gw.kubeconfig(sam, "sam", ("kubegate:sre",), server=f"{fleet.gw.url}/clusters/prod-1")
    approved = subprocess.run([sys.executable, "-m", "kubegate", "approvals", "approve", _ticket(patched.stderr),
                               "--kubeconfig", str(sam)], capture_output=True, text=True, timeout=60)
    assert approved.returncode == 0, approved.stderr
    assert "patched" in prod("-n", "shop", "patch", "deployment", "web", "--type=json", "-p", json.dumps(patch)).stdout
    image = prod("-n", "shop", "get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "shop/web:1.9"


def test_a_rollback_and_a_scale_are_not_held(fleet: Fleet) -> None:
    prod = fleet.kubectl("prod-1")
    assert "image updated" in fleet.set_image("prod-1", "shop/web:1.7").stdout  # its ReplicaSet ran it here
    events = [e for e in fleet.gw.audit_events() if e["verb"] == "patch" and "prod-1" in e["requestURI"]]
    assert events[-1]["annotations"]["kubegate.io/rollout"] == "shop: a rollback to a template that ran here"
    assert "scaled" in prod("-n", "shop", "scale", "deployment", "web", "--replicas=2").stdout


def test_a_stages_verification_webhook_must_pass_before_promotion(fleet: Fleet) -> None:
    """The payments rollout verifies staging with the business side's checker (a ChangeReview
    carrying `rollout`); it says no for wh-deny-* and yes for wh-ok-*."""
    for ns in ("wh-ok-pay", "wh-deny-pay"):
        fleet.kubectl("staging-1")("-n", ns, "set", "image", "deployment/web", "web=shop/web:2.0")
        fleet.kubectl("staging-2")("-n", ns, "set", "image", "deployment/web", "web=shop/web:2.0")
    refused = fleet.kubectl("prod-1")("-n", "wh-deny-pay", "set", "image", "deployment/web", "web=shop/web:2.0",
                                      check=False)
    assert "staging: verification inspection says no (inspection INC-314 is still open)" in refused.stderr
    assert "image updated" in fleet.kubectl("prod-1")("-n", "wh-ok-pay", "set", "image", "deployment/web",
                                                      "web=shop/web:2.0").stdout
    asked = [r["request"]["rollout"] for r in fleet.checker.reviews if r["request"].get("rollout")]
    assert {"rollout": "payments", "verifiedStage": "staging", "targetStage": "prod", "cluster": "prod-1",
            "namespace": "wh-ok-pay", "name": "web", "resource": "deployments.apps",
            "images": ["shop/web:2.0"]} in asked


CASES = """
now: "2026-12-05T12:00:00+00:00"
cases:
  - name: prod takes an image staging ran ready for the soak
    user: ada
    cluster: prod-1
    verb: patch
    resource: deployments.apps
    namespace: shop
    object: web
    content_type: application/strategic-merge-patch+json
    body: {spec: {template: {spec: {containers: [{name: web, image: "shop/web:1.8"}]}}}}
    objects: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: shop, uid: p},
               spec: {replicas: 3, template: {spec: {containers: [{name: web, image: "shop/web:1.7"}]}}}}]
    clusters:
      staging-1: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: shop},
                   spec: {replicas: 2, template: {spec: {containers: [{name: web, image: "shop/web:1.8"}]}}},
                   status: {readyReplicas: 2, updatedReplicas: 2,
                            conditions: [{type: Available, status: "True", lastTransitionTime: "2026-12-05T11:00:00Z"}]}}]
    expect: allow
  - name: prod waits while staging has run it for 20 minutes of 30
    user: ada
    cluster: prod-1
    verb: patch
    resource: deployments.apps
    namespace: shop
    object: web
    content_type: application/strategic-merge-patch+json
    body: {spec: {template: {spec: {containers: [{name: web, image: "shop/web:1.8"}]}}}}
    objects: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: shop, uid: p},
               spec: {replicas: 3, template: {spec: {containers: [{name: web, image: "shop/web:1.7"}]}}}}]
    clusters:
      staging-1: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: shop},
                   spec: {replicas: 2, template: {spec: {containers: [{name: web, image: "shop/web:1.8"}]}}},
                   status: {readyReplicas: 2, updatedReplicas: 2,
                            conditions: [{type: Available, status: "True", lastTransitionTime: "2026-12-05T11:40:00Z"}]}}]
    expect: approval
    by: shop
"""


def test_rollout_order_is_tested_with_policy_test_cases(tmp_path: Path) -> None:
    gates = tmp_path / "gates"
    (gates / "tests").mkdir(parents=True)
    (gates / "rollouts.yaml").write_text(ROLLOUTS.split("  - name: payments")[0])
    (gates / "tests" / "rollouts.yaml").write_text(CASES)
    out = subprocess.run([sys.executable, "-m", "kubegate", "policy", "test", str(gates)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "2 passed, 0 failed" in out.stdout, out.stdout + out.stderr
    (gates / "tests" / "rollouts.yaml").write_text(CASES.replace("11:40:00Z", "11:00:00Z"))  # soaked: the case fails
    out = subprocess.run([sys.executable, "-m", "kubegate", "policy", "test", str(gates)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "expected approval, got allow" in out.stdout
