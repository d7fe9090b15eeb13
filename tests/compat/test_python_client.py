"""The compatibility matrix with the official kubernetes Python client."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes import watch

from tests.compat.conftest import Cluster


def pod(name: str, labels: dict[str, str] | None = None) -> k8s.V1Pod:
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name, labels=labels or {}),
                     spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="main", image="busybox")]))


def test_create_get_list_delete(cluster: Cluster, ns: str) -> None:
    core = k8s.CoreV1Api(cluster.api)
    created = core.create_namespaced_pod(ns, pod("a", {"app": "x"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert core.read_namespaced_pod("a", ns).status.phase == "Running"
    core.create_namespaced_pod(ns, pod("b", {"app": "y"}))
    assert [p.metadata.name for p in core.list_namespaced_pod(ns, label_selector="app=x").items] == ["a"]
    core.delete_namespaced_pod("a", ns)
    with pytest.raises(k8s.ApiException) as err:
        core.read_namespaced_pod("a", ns)
    assert err.value.status == 404


def test_list_pages_with_limit_and_continue(cluster: Cluster, ns: str) -> None:
    core = k8s.CoreV1Api(cluster.api)
    for i in range(5):
        core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=f"c{i}")))
    first = core.list_namespaced_config_map(ns, limit=2)
    assert [c.metadata.name for c in first.items] == ["c0", "c1"]
    assert first.metadata.remaining_item_count == 3
    rest = core.list_namespaced_config_map(ns, limit=10, _continue=first.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["c2", "c3", "c4"]
    assert not rest.metadata._continue


def test_watch_stream(cluster: Cluster, ns: str) -> None:
    core = k8s.CoreV1Api(cluster.api)
    start = core.list_namespaced_pod(ns).metadata.resource_version
    core.create_namespaced_pod(ns, pod("w"))
    core.delete_namespaced_pod("w", ns)
    seen = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, ns, resource_version=start, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", "w"), ("DELETED", "w")]


def test_delete_collection_with_selector(cluster: Cluster, ns: str) -> None:
    core = k8s.CoreV1Api(cluster.api)
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        core.create_namespaced_pod(ns, pod(name, {"tier": tier}))
    core.delete_collection_namespaced_pod(ns, label_selector="tier=web")
    assert [p.metadata.name for p in core.list_namespaced_pod(ns).items] == ["c"]


def test_deployment_scale_subresource(cluster: Cluster, ns: str) -> None:
    apps = k8s.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(ns, k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="d"),
        spec=k8s.V1DeploymentSpec(
            replicas=2, selector=k8s.V1LabelSelector(match_labels={"app": "d"}),
            template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels={"app": "d"}),
                                           spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="m", image="i")])))))
    scale = apps.read_namespaced_deployment_scale("d", ns)
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=d")
    apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 0}})
    assert apps.read_namespaced_deployment("d", ns).spec.replicas == 0
