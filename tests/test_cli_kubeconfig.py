"""kubegate's API CLIs read kubeconfig as kubectl does: exec plugins, KUBECONFIG lists, --context,
and say what is wrong (never a traceback); their output has header rows, or is JSON or YAML."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import GatewayHandle


def kubegate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def _cluster(gw: GatewayHandle, name: str = "gw", server: str | None = None) -> dict[str, Any]:
    return {"name": name, "cluster": {"server": server or gw.url,
                                      "certificate-authority-data": base64.b64encode(gw.ca_file.read_bytes()).decode()}}


def _exec_plugin(tmp_path: Path, token: str, *, fail: bool = False) -> dict[str, Any]:
    """A credential plugin, as kubelogin is one: prints an ExecCredential (or fails)."""
    script = tmp_path / ("broken-plugin.py" if fail else "plugin.py")
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": token}}
    script.write_text("import sys\n" + ("sys.stderr.write('login required\\n'); sys.exit(1)\n" if fail else
                                        f"print({json.dumps(json.dumps(credential))})\n"))
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(script)], "interactiveMode": "Never"}}


def _kubeconfig(path: Path, clusters: list[dict[str, Any]], users: list[dict[str, Any]],
                contexts: list[dict[str, Any]], current: str | None) -> Path:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users,
                           "contexts": contexts}
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def test_an_exec_plugin_user_works(gateway: GatewayHandle, tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path / "kc", [_cluster(gateway)],
                     [{"name": "ada", "user": _exec_plugin(tmp_path, gateway.token("ada"))}],
                     [{"name": "c", "context": {"cluster": "gw", "user": "ada"}}], "c")
    out = kubegate("breaker", "list", "-o", "json", "--kubeconfig", str(kc))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["items"] == []
    asked = kubegate("access", "request", "--role", "viewer", "--cluster", "emu", "--for", "10m",
                     "--reason", "exec plugin test", "-o", "json", "--kubeconfig", str(kc))
    assert asked.returncode == 0, asked.stderr
    item = json.loads(asked.stdout)
    assert item["user"] == "ada" and item["status"] == "pending"
    listed = kubegate("access", "list", "--kubeconfig", str(kc))
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "USER", "ROLE", "WHERE", "FOR", "DECIDED", "BY", "REASON"]
    assert any(row.startswith(item["id"]) for row in rows)
    bare = kubegate("access", "list", "--no-headers", "--kubeconfig", str(kc)).stdout.splitlines()
    assert bare and all(not line.startswith("ID") for line in bare)
    as_yaml = yaml.safe_load(kubegate("access", "list", "-o", "yaml", "--kubeconfig", str(kc)).stdout)
    assert item["id"] in [i["id"] for i in as_yaml["items"]]


def test_a_failing_exec_plugin_is_a_clear_error(gateway: GatewayHandle, tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path / "kc", [_cluster(gateway)],
                     [{"name": "ada", "user": _exec_plugin(tmp_path, "", fail=True)}],
                     [{"name": "c", "context": {"cluster": "gw", "user": "ada"}}], "c")
    out = kubegate("approvals", "list", "--kubeconfig", str(kc))
    assert out.returncode == 1 and out.stderr.startswith("error:") and "Traceback" not in out.stderr, out.stderr


def test_kubeconfig_lists_and_contexts(gateway: GatewayHandle, tmp_path: Path) -> None:
    # Clusters and users in one file, contexts in another, as KUBECONFIG=a:b merges them; the
    # current context points at a dead address, --context picks the good one.
    a = _kubeconfig(tmp_path / "a", [_cluster(gateway), _cluster(gateway, "dead", "https://127.0.0.1:9")],
                    [{"name": "ada", "user": {"token": gateway.token("ada")}}], [], None)
    b = _kubeconfig(tmp_path / "b", [], [], [{"name": "good", "context": {"cluster": "gw", "user": "ada"}},
                                             {"name": "bad", "context": {"cluster": "dead", "user": "ada"}}], "bad")
    env = {"KUBECONFIG": f"{a}{os.pathsep}{b}"}
    good = kubegate("approvals", "list", "--context", "good", env=env)
    assert good.returncode == 0 and "no approval tickets" in good.stderr, good.stderr
    dead = kubegate("approvals", "list", env=env)
    assert dead.returncode == 1 and "cannot reach the gateway at https://127.0.0.1:9" in dead.stderr
    unknown = kubegate("approvals", "list", "--context", "nope", env=env)
    assert unknown.returncode == 1 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    out = kubegate("breaker", "list", "--kubeconfig", str(tmp_path / "missing"))
    assert out.returncode == 1 and out.stderr.startswith("error:") and "Traceback" not in out.stderr, out.stderr


def test_a_kubeconfig_list_resolves_as_kubectl_resolves_it(gateway: GatewayHandle, tmp_path: Path,
                                                           kubectl_path: str) -> None:
    """KUBECONFIG=a:b where both set a current context and both define a user `me`: kubectl takes the
    first file's of each; so does kubegate (the Python client's merger took b's context: another
    user on another gateway)."""
    a = _kubeconfig(tmp_path / "a", [_cluster(gateway)], [{"name": "me", "user": {"token": gateway.token("ada")}}],
                    [{"name": "work", "context": {"cluster": "gw", "user": "me"}}], "work")
    b = _kubeconfig(tmp_path / "b", [_cluster(gateway, "elsewhere", "https://127.0.0.1:9")],
                    [{"name": "me", "user": {"token": "someone-elses"}}],
                    [{"name": "other", "context": {"cluster": "elsewhere", "user": "me"}}], "other")
    env = {"KUBECONFIG": f"{a}{os.pathsep}{tmp_path / 'missing'}{os.pathsep}{b}"}
    current = subprocess.run([kubectl_path, "config", "current-context"], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=30)
    assert current.stdout.strip() == "work"
    out = kubegate("approvals", "list", env=env)
    assert out.returncode == 0 and "no approval tickets" in out.stderr, out.stderr
    other = kubegate("approvals", "list", "--context", "other", env=env)  # b's context, a's user `me`: as kubectl
    assert other.returncode == 1 and "cannot reach the gateway at https://127.0.0.1:9" in other.stderr
