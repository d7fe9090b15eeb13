"""The compatibility matrix with the real kubectl binary: what users type, what they see."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.compat.conftest import Cluster

pytestmark = pytest.mark.kubectl


def deployment_yaml(name: str, ns: str, image: str, replicas: int = 2) -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              containers:
              - name: main
                image: {image}
                env: [{{name: MODE, value: test}}]
        """)


def test_version(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["minor"] == "37"
    assert out["serverVersion"]["gitVersion"].startswith("v1.37")


def test_api_resources_lists_builtins_and_groups(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources", "-o", "name").stdout.split()
    for name in ("pods", "namespaces", "deployments.apps", "jobs.batch",
                 "customresourcedefinitions.apiextensions.k8s.io"):
        assert name in out


def test_get_list_all_namespaces_json(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "one", "-n", ns, "--from-literal=k=v")
    listing = cluster.kubectl.json("get", "configmaps", "-A")
    names = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listing["items"]}
    assert (ns, "one") in names
    single = cluster.kubectl.json("get", "configmap", "one", "-n", ns)
    assert single["data"] == {"k": "v"}
    assert single["metadata"]["resourceVersion"].isdigit()


def test_get_missing_object_is_not_found(cluster: Cluster, ns: str) -> None:
    proc = cluster.kubectl("get", "pod", "nope", "-n", ns, check=False)
    assert proc.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in proc.stderr


def test_create_namespace_and_duplicate_is_already_exists(cluster: Cluster, ns: str) -> None:
    proc = cluster.kubectl("create", "namespace", ns, check=False)
    assert proc.returncode == 1
    assert f'Error from server (AlreadyExists): namespaces "{ns}" already exists' in proc.stderr


def test_create_deployment_protobuf_body(cluster: Cluster, ns: str) -> None:
    out = cluster.kubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=3", "-n", ns)
    assert "deployment.apps/web created" in out.stdout
    dep = cluster.kubectl.json("get", "deployment", "web", "-n", ns)
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "web"}


def test_apply_client_side_then_unchanged_then_configured(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    manifest = tmp_path / "d.yaml"
    manifest.write_text(deployment_yaml("api", ns, "api:1"))
    assert "deployment.apps/api created" in cluster.kubectl("apply", "-f", str(manifest)).stdout
    assert "deployment.apps/api unchanged" in cluster.kubectl("apply", "-f", str(manifest)).stdout
    manifest.write_text(deployment_yaml("api", ns, "api:2"))
    assert "deployment.apps/api configured" in cluster.kubectl("apply", "-f", str(manifest)).stdout
    dep = cluster.kubectl.json("get", "deployment", "api", "-n", ns)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "api:2"
    assert container["env"] == [{"name": "MODE", "value": "test"}]  # merged by name, not lost
    assert dep["metadata"]["generation"] == 2


def test_create_then_apply_a_list(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    """A `kind: List` file (what `kubectl get -o yaml` writes): kubectl checks its items against
    /openapi/v2 on the client, then creates each."""
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "listed", "namespace": ns},
              "data": {"a": "1"}},
             yaml.safe_load(deployment_yaml("listed", ns, "listed:1"))]
    manifest = tmp_path / "list.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    created = cluster.kubectl("create", "-f", str(manifest))
    assert "configmap/listed created" in created.stdout and "deployment.apps/listed created" in created.stdout
    items[0]["data"] = {"a": "2"}
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    applied = cluster.kubectl("apply", "-f", str(manifest)).stdout  # (both gain apply's last-applied annotation)
    assert "configmap/listed configured" in applied and "deployment.apps/listed configured" in applied, applied
    again = cluster.kubectl("apply", "-f", str(manifest)).stdout
    assert "configmap/listed unchanged" in again and "deployment.apps/listed unchanged" in again, again
    assert cluster.kubectl.json("get", "configmap", "listed", "-n", ns)["data"] == {"a": "2"}


def test_apply_server_side(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    manifest = tmp_path / "d.yaml"
    manifest.write_text(deployment_yaml("ssa", ns, "ssa:1"))
    assert "serverside-applied" in cluster.kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    manifest.write_text(deployment_yaml("ssa", ns, "ssa:2", replicas=4))
    assert "serverside-applied" in cluster.kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    dep = cluster.kubectl.json("get", "deployment", "ssa", "-n", ns)
    assert dep["spec"]["replicas"] == 4
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "ssa:2"


def test_replace_and_stale_replace_conflicts(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    cluster.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=a=1")
    current = cluster.kubectl.json("get", "configmap", "cfg", "-n", ns)
    current["data"]["a"] = "2"
    f = tmp_path / "cm.json"
    f.write_text(json.dumps(current))
    assert "configmap/cfg replaced" in cluster.kubectl("replace", "-f", str(f)).stdout
    proc = cluster.kubectl("replace", "-f", str(f), check=False)  # same, now stale, resourceVersion
    assert proc.returncode == 1
    assert "Error from server (Conflict)" in proc.stderr
    assert cluster.kubectl.json("get", "configmap", "cfg", "-n", ns)["data"] == {"a": "2"}


def test_label(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "configmap", "cfg", "-n", ns)
    assert "configmap/cfg labeled" in cluster.kubectl("label", "configmap", "cfg", "-n", ns, "tier=gold").stdout
    out = cluster.kubectl("get", "configmaps", "-n", ns, "-l", "tier=gold", "-o", "name").stdout
    assert out.split() == ["configmap/cfg"]


@pytest.mark.parametrize(("kind", "patch", "expected"), [
    pytest.param("merge", '{"data":{"b":"2"}}', {"a": "1", "b": "2"}, id="merge"),
    pytest.param("json", '[{"op":"replace","path":"/data/a","value":"9"}]', {"a": "9"}, id="json"),
    pytest.param("strategic", '{"data":{"c":"3"}}', {"a": "1", "c": "3"}, id="strategic"),
])
def test_patch_kinds(cluster: Cluster, ns: str, kind: str, patch: str, expected: dict[str, str]) -> None:
    cluster.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=a=1")
    assert "patched" in cluster.kubectl("patch", "configmap", "cfg", "-n", ns, "--type", kind, "-p", patch).stdout
    assert cluster.kubectl.json("get", "configmap", "cfg", "-n", ns)["data"] == expected


def test_strategic_patch_merges_containers_by_name(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    manifest = tmp_path / "d.yaml"
    manifest.write_text(deployment_yaml("sp", ns, "sp:1"))
    cluster.kubectl("apply", "-f", str(manifest))
    cluster.kubectl("patch", "deployment", "sp", "-n", ns, "-p",
                    '{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"sp:2"}]}}}}')
    container = cluster.kubectl.json("get", "deployment", "sp", "-n", ns)["spec"]["template"]["spec"]["containers"]
    assert container == [{"name": "main", "image": "sp:2", "env": [{"name": "MODE", "value": "test"}]}]


def test_scale_to_zero(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("create", "deployment", "web", "--image=nginx", "-n", ns)
    assert "deployment.apps/web scaled" in cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=0").stdout
    dep = cluster.kubectl.json("get", "deployment", "web", "-n", ns)
    assert dep["spec"]["replicas"] == 0
    assert dep["status"]["replicas"] == 0


def test_delete_and_delete_all(cluster: Cluster, ns: str) -> None:
    for i in range(3):
        cluster.kubectl("run", f"p{i}", "--image=busybox", "-n", ns)
    assert 'pod "p0" deleted' in cluster.kubectl("delete", "pod", "p0", "-n", ns).stdout
    out = cluster.kubectl("delete", "pods", "--all", "-n", ns).stdout
    assert 'pod "p1" deleted' in out and 'pod "p2" deleted' in out
    assert cluster.kubectl("get", "pods", "-n", ns, "-o", "name").stdout.strip() == ""


def test_delete_namespace_removes_its_objects(cluster: Cluster) -> None:
    from tests.conftest import unique

    ns = unique("gone")
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "configmap", "c", "-n", ns)
    cluster.kubectl("run", "p", "--image=x", "-n", ns)
    cluster.kubectl("delete", "namespace", ns)
    assert cluster.kubectl("get", "pods,configmaps", "-A", "-o", "name",
                           f"--field-selector=metadata.namespace={ns}").stdout.strip() == ""
    assert cluster.kubectl("get", "namespace", ns, check=False).returncode == 1


def test_watch_sees_added_and_deleted_live(cluster: Cluster, ns: str) -> None:
    watch = cluster.kubectl.stream("get", "pods", "-n", ns, "-w", "--output-watch-events")
    try:
        cluster.kubectl("run", "w1", "--image=x", "-n", ns)
        watch.wait_for(lambda line: line.split()[:2] == ["ADDED", "w1"])
        cluster.kubectl("delete", "pod", "w1", "-n", ns)
        watch.wait_for(lambda line: line.split()[:2] == ["DELETED", "w1"])
    finally:
        watch.stop()


def test_logs_and_follow(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("run", "logger", "--image=busybox", "-n", ns)
    assert "container logger started (image busybox)" in cluster.kubectl("logs", "logger", "-n", ns).stdout
    follow = cluster.kubectl.stream("logs", "-f", "logger", "-n", ns)
    try:
        follow.wait_for(lambda line: "started" in line)
        cluster.upstream.append_log(ns, "logger", "logger", "a line written while following")
        follow.wait_for(lambda line: line == "a line written while following")
    finally:
        follow.stop()


@pytest.mark.parametrize(("command", "stdout", "code"), [
    pytest.param(["echo", "hello"], "hello\n", 0, id="echo"),
    pytest.param(["sh", "-c", "echo out; exit 3"], "out\n", 3, id="exit-3"),
    pytest.param(["false"], "", 1, id="false"),
])
def test_exec_websocket_exit_codes(cluster: Cluster, ns: str, command: list[str], stdout: str, code: int) -> None:
    cluster.kubectl("run", "box", "--image=busybox", "-n", ns)
    proc = cluster.kubectl("exec", "box", "-n", ns, "--", *command, check=False)
    assert proc.stdout == stdout
    assert proc.returncode == code
    if code:
        assert f"command terminated with exit code {code}" in proc.stderr


def test_exec_stdin_and_stderr(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("run", "box", "--image=busybox", "-n", ns)
    proc = cluster.kubectl("exec", "-i", "box", "-n", ns, "--", "cat", input="piped through\n")
    assert proc.stdout == "piped through\n"
    proc = cluster.kubectl("exec", "box", "-n", ns, "--", "sh", "-c", "echo oops >&2")
    assert proc.stderr == "oops\n" and proc.stdout == ""


def test_auth_can_i(cluster: Cluster) -> None:
    proc = cluster.kubectl("auth", "can-i", "delete", "pods", "-n", "default", check=False)
    assert proc.stdout.strip() == "yes"


def test_auth_whoami(cluster: Cluster) -> None:
    out = json.loads(cluster.kubectl("auth", "whoami", "-o", "json").stdout)
    assert out["status"]["userInfo"]["username"] == cluster.username
    assert "system:authenticated" in out["status"]["userInfo"]["groups"]
