"""The target the compatibility matrix runs against: the emulator directly (later: through kubegate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pytest
from kubernetes import client as k8s

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, python_client, unique


@dataclass
class Cluster:
    name: str
    kubectl: Kubectl
    api: k8s.ApiClient
    upstream: harness.RunningEmulator
    username: str  # who the upstream should see as the caller


GATEWAY_USER = ("compat-admin", ["kubegate:cluster-admins"])


@pytest.fixture(params=["direct", "gateway"])
def cluster(request: pytest.FixtureRequest, upstream: harness.RunningEmulator, kubectl_path: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The same cases run straight against the emulator and through kubegate in front of it."""
    home = tmp_path_factory.mktemp("kubectl")
    if request.param == "direct":
        kubeconfig = upstream.kubeconfig(home / "config")
        api = python_client(upstream.url, upstream.ca_file, upstream.admin_token)
        username = harness.ADMIN.username
    else:
        gw: GatewayHandle = request.getfixturevalue("gateway")
        user, groups = GATEWAY_USER
        kubeconfig = gw.kubeconfig(home / "config", user, groups)
        api = python_client(gw.url, gw.ca_file, gw.token(user, groups))
        username = user
    yield Cluster(request.param, Kubectl(kubectl_path, kubeconfig), api, upstream, username)
    api.close()


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = unique("ns")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
