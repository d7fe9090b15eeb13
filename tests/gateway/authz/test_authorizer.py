"""Authorization through the gateway, with real kubectl: what users of each role can and cannot do."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

from kubegate.emulator import harness
from kubegate.gateway.authz import policy
from kubegate.gateway.authz.authorizer import Authorizer
from tests.conftest import POLICY_DIR, GatewayHandle, Kubectl, start_gateway, unique


@pytest.fixture(scope="module")
def authz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayHandle, Path]]:
    state = tmp_path_factory.mktemp("authz")
    # A ConfigMap-style mount: the directory is a symlink, swapped whole on change.
    live = state / "policy-v1"
    shutil.copytree(POLICY_DIR, live)
    mount = state / "authz"
    mount.symlink_to(live)
    upstream = harness.start(state / "emulator")
    gw = start_gateway(state / "gw", upstream, authz={"policy_dir": str(mount), "reload_interval_seconds": 0.1})
    admin = Kubectl(os.environ.get("KUBECTL", shutil.which("kubectl") or "kubectl"),
                    upstream.kubeconfig(state / "admin.kubeconfig"))
    for ns in ("shop", "payments"):
        admin("create", "namespace", ns)
        admin("run", "web-0", "--image=nginx", "-n", ns)
    admin("create", "secret", "generic", "db", "--from-literal=pw=x", "-n", "payments")
    yield gw, mount
    gw.stop()
    upstream.stop()


def as_user(env: tuple[GatewayHandle, Path], kubectl_path: str, tmp_path: Path, user: str, *groups: str) -> Kubectl:
    return Kubectl(kubectl_path, env[0].kubeconfig(tmp_path / f"{user}.kubeconfig", user, groups))


def test_viewer_reads_but_delete_is_forbidden(authz_env: tuple[GatewayHandle, Path], kubectl_path: str,
                                              tmp_path: Path) -> None:
    vic = as_user(authz_env, kubectl_path, tmp_path, "vic", "kubegate:viewers")
    assert "pod/web-0" in vic("get", "pods", "-n", "shop", "-o", "name").stdout
    proc = vic("delete", "pod", "web-0", "-n", "shop", check=False)
    assert proc.returncode == 1
    assert ('Error from server (Forbidden): kubegate: user "vic" may not delete pods "web-0" in namespace "shop" '
            'of cluster "emu" (no rule allows it)') in proc.stderr
    events = [e for e in authz_env[0].audit_events() if e["user"]["username"] == "vic" and e["verb"] == "delete"]
    assert events[-1]["annotations"]["kubegate.io/stage"] == "authz"
    assert events[-1]["annotations"]["kubegate.io/authz"] == "no rule allows it"


def test_deny_beats_allow_for_secrets(authz_env: tuple[GatewayHandle, Path], kubectl_path: str, tmp_path: Path) -> None:
    vic = as_user(authz_env, kubectl_path, tmp_path, "vic", "kubegate:viewers")
    proc = vic("get", "secret", "db", "-n", "payments", check=False)
    assert "(denied by rule secrets-need-secret-reader (authz/guardrails.csv:3))" in proc.stderr
    sam = as_user(authz_env, kubectl_path, tmp_path, "sam", "kubegate:sre")
    assert sam("get", "secret", "db", "-n", "payments", "-o", "name").stdout.strip() == "secret/db"


def test_developer_writes_only_in_own_namespaces(authz_env: tuple[GatewayHandle, Path], kubectl_path: str,
                                                 tmp_path: Path) -> None:
    dan = as_user(authz_env, kubectl_path, tmp_path, "dan", "team-shop")
    name = unique("app")
    assert "created" in dan("create", "deployment", name, "--image=nginx", "-n", "shop").stdout
    assert dan("exec", "web-0", "-n", "shop", "--", "echo", "in shop").stdout == "in shop\n"
    proc = dan("create", "deployment", name, "--image=nginx", "-n", "payments", check=False)
    assert proc.returncode == 1  # typed creates print "error: failed to create deployment: <message>"
    assert 'kubegate: user "dan" may not create deployments.apps in namespace "payments"' in proc.stderr
    assert "pod/web-0" in dan("get", "pods", "-n", "payments", "-o", "name").stdout  # reading is fine


def test_kube_system_is_protected(authz_env: tuple[GatewayHandle, Path], kubectl_path: str, tmp_path: Path) -> None:
    sam = as_user(authz_env, kubectl_path, tmp_path, "sam", "kubegate:sre")
    proc = sam("create", "configmap", "x", "-n", "kube-system", check=False)
    assert proc.returncode == 1 and "(denied by rule kube-system-admins-only (authz/guardrails.csv:5))" in proc.stderr
    ada = as_user(authz_env, kubectl_path, tmp_path, "ada", "kubegate:cluster-admins")
    assert "created" in ada("create", "configmap", unique("x"), "-n", "kube-system").stdout


def _swap(mount: Path, mutate: object) -> None:
    """Publish a new policy version the way a ConfigMap update does: a new directory, one symlink swap."""
    current = mount.resolve()
    new = current.parent / f"policy-{time.monotonic_ns()}"
    shutil.copytree(current, new)
    mutate(new)  # type: ignore[operator]
    tmp_link = mount.parent / "authz.tmp"
    tmp_link.symlink_to(new)
    os.replace(tmp_link, mount)


def _wait_for(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_broken_policy_is_refused_and_a_valid_change_applies(authz_env: tuple[GatewayHandle, Path], kubectl_path: str,
                                                             tmp_path: Path) -> None:
    gw, mount = authz_env
    vic = as_user(authz_env, kubectl_path, tmp_path, "vic", "kubegate:viewers")
    metrics_url = f"http://127.0.0.1:{gw.metrics_port}/metrics"
    import urllib.request

    def refused() -> bool:
        return 'kubegate_policy_reloads_total{policy="authz",result="refused"} 1.0' in urllib.request.urlopen(metrics_url).read().decode()

    # A broken set: the old policy keeps answering.
    _swap(mount, lambda d: (d / "roles.csv").write_text((d / "roles.csv").read_text() + "p, role:viewer, *:*, pod, get\n"))
    assert _wait_for(refused)
    assert "pod/web-0" in vic("get", "pods", "-n", "shop", "-o", "name").stdout
    assert "refused the new authorization policy" in gw.log_file.read_text()  # type: ignore[union-attr]
    # A valid change: viewers may now delete pods in shop.
    _swap(mount, lambda d: (d / "roles.csv").write_text(  # fixed: the good roles plus one rule
        (POLICY_DIR / "roles.csv").read_text() + "p, role:viewer, *:shop, pods, delete, *, allow\n"))
    assert _wait_for(lambda: vic("delete", "pod", "web-0", "-n", "shop", "--dry-run=server", check=False).returncode == 0)
    assert 'pod "web-0" deleted' in vic("delete", "pod", "web-0", "-n", "shop").stdout


def test_loading_the_policy_logs_no_dump_of_it(caplog: pytest.LogCaptureFixture) -> None:
    """pycasbin logs the model and every policy line at INFO on each load and reload: not in kubegate's log."""
    with caplog.at_level(logging.INFO):
        Authorizer(policy.load(Path(__file__).resolve().parents[3] / "policies" / "authz"))
    assert [r.getMessage() for r in caplog.records if r.name.startswith("casbin")] == []
