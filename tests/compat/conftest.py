"""The target the compatibility matrix runs against: the emulator directly (later: through kubegate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pytest
from kubernetes import client as k8s

from kubegate.emulator import harness
from tests.conftest import Kubectl, python_client, unique


@dataclass
class Cluster:
    name: str
    kubectl: Kubectl
    api: k8s.ApiClient
    upstream: harness.RunningEmulator
    username: str  # who the upstream should see as the caller


@pytest.fixture(params=["direct"])
def cluster(request: pytest.FixtureRequest, upstream: harness.RunningEmulator, kubectl_path: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("kubectl")
    kubeconfig = upstream.kubeconfig(home / "config")
    api = python_client(upstream.url, upstream.ca_file, upstream.admin_token)
    yield Cluster("direct", Kubectl(kubectl_path, kubeconfig), api, upstream, harness.ADMIN.username)
    api.close()


@pytest.fixture
def ns(cluster: Cluster) -> Iterator[str]:
    name = unique("ns")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
