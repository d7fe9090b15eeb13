"""`kubectl auth can-i` answered from kubegate's policy and the cluster's, with real kubectl."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, start_gateway

RULES = (Path(__file__).resolve().parents[3] / "policies" / "gates" / "rules.yaml").read_text()
LIMITS = """
budgets:
  - name: pod-deletes
    resources: [pods]
    per: [cluster]
    windows: {1h: 100}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayHandle, harness.RunningEmulator, Path]]:
    state = tmp_path_factory.mktemp("can-i")
    upstream = harness.start(state / "emulator")
    gw = start_gateway(state / "gw", upstream, limits=LIMITS, gate_files={"rules.yaml": RULES})
    yield gw, upstream, state
    gw.stop()
    upstream.stop()


def as_user(env: tuple[GatewayHandle, harness.RunningEmulator, Path], kubectl_path: str, user: str,
            *groups: str) -> Kubectl:
    gw, _, state = env
    return Kubectl(kubectl_path, gw.kubeconfig(state / f"kc-{user}", user, groups))


@pytest.mark.kubectl
def test_can_i_says_what_kubegate_allows(env: tuple[GatewayHandle, harness.RunningEmulator, Path],
                                         kubectl_path: str) -> None:
    viewer = as_user(env, kubectl_path, "vic", "kubegate:viewers")
    out = viewer("auth", "can-i", "delete", "pods", "-n", "shop", check=False)
    assert out.stdout.startswith("no - kubegate: no rule allows it")  # the emulator's RBAC would have said yes
    assert viewer("auth", "can-i", "get", "pods", "-n", "shop").stdout.strip() == "yes"
    dev = as_user(env, kubectl_path, "dan", "team-shop")
    assert dev("auth", "can-i", "delete", "pods", "-n", "shop").stdout.strip() == "yes"
    assert dev("auth", "can-i", "delete", "pods", "-n", "kube-system", check=False).stdout.startswith("no")


def test_the_cluster_must_agree(env: tuple[GatewayHandle, harness.RunningEmulator, Path]) -> None:
    gw, upstream, _ = env
    upstream.call(lambda: upstream.emulator.deny_users.add("ada-denied"))  # the cluster refuses her everything
    status = _review(gw, "ada-denied", ["kubegate:cluster-admins"], {"verb": "get", "resource": "pods"})
    assert status["allowed"] is False and "the cluster" in status["reason"]  # though kubegate allows it


def _review(gw: GatewayHandle, user: str, groups: list[str], attributes: dict[str, str]) -> dict[str, object]:
    import json

    from tests.gateway.conftest import send
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": attributes}}
    resp = send(gw.port, gw.ca_file, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                body=json.dumps(review).encode(), headers={
                    "Authorization": f"Bearer {gw.token(user, groups)}", "Content-Type": "application/json"})
    assert resp.status == 201, resp.body
    status: dict[str, object] = resp.json()["status"]
    return status


def test_the_reason_names_the_rule_and_the_gates_still_ahead(
        env: tuple[GatewayHandle, harness.RunningEmulator, Path]) -> None:
    gw, _, _ = env
    status = _review(gw, "dan", ["team-shop"], {"namespace": "shop", "verb": "delete", "resource": "pods"})
    assert status["allowed"] is True
    assert "allowed by rule developers-run-pods (authz/roles.csv:" in str(status["reason"]) and "delete budget pod-deletes" in str(status["reason"])


@pytest.mark.kubectl
def test_can_i_list_shows_kubegates_grants(env: tuple[GatewayHandle, harness.RunningEmulator, Path],
                                          kubectl_path: str) -> None:
    viewer = as_user(env, kubectl_path, "vic2", "kubegate:viewers")
    out = viewer("auth", "can-i", "--list", "-n", "shop").stdout
    lines = out.splitlines()
    assert any(line.split()[0] == "*.*" and "[get list watch]" in line for line in lines[1:]), out
    assert not any("[*]" in line and line.split()[0] in ("*.*", "*") for line in lines[1:]), out  # not the cluster's "*"


def test_can_i_list_claims_no_group_and_resource_pair_it_does_not_grant(
        env: tuple[GatewayHandle, harness.RunningEmulator, Path], kubectl_path: str) -> None:
    """A developer may manage deployments.apps, jobs.batch and configmaps (core): not jobs.apps or
    configmaps.networking.k8s.io, which a rule listing several groups at once made kubectl print."""
    dev = as_user(env, kubectl_path, "dora", "team-shop")
    out = dev("auth", "can-i", "--list", "-n", "shop").stdout
    listed = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
    assert {"deployments.apps", "jobs.batch", "configmaps", "ingresses.networking.k8s.io"} <= listed, out
    assert not listed & {"jobs.apps", "configmaps.networking.k8s.io", "deployments.batch", "cronjobs.apps",
                         "services.networking.k8s.io"}, out
