"""Logging in through a real OpenID Connect provider (oidc-provider-mock in its own process, over
TLS): keys found by discovery, an ID token from its authorization-code flow handed to kubectl by an
exec plugin (as kubelogin does), required claims enforced, and an `issuer#sub` username bound in
the policy CSV."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from kubegate.emulator import harness
from tests.conftest import POLICY_DIR, GatewayHandle, Kubectl, start_gateway
from tests.oidc import provider as oidc_provider


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[oidc_provider.Provider]:
    provider = oidc_provider.start_tls(tmp_path_factory.mktemp("idp"))
    provider.user("alice", {"email": "alice@example.com", "email_verified": True, "groups": ["team-shop"],
                            "hd": "example.com"})
    provider.user("mallory", {"email": "mallory@elsewhere.example", "groups": ["team-shop"], "hd": "elsewhere"})
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def gw(idp: oidc_provider.Provider, upstream: harness.RunningEmulator,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    state = tmp_path_factory.mktemp("oidc-gw")
    authz = state / "authz"
    shutil.copytree(POLICY_DIR, authz)
    # kube-apiserver's default OIDC username is "<issuer>#<sub>": '#' and ':' inside a quoted field.
    with open(authz / "bindings.csv", "a") as f:
        f.write(f'g, "user:{idp.issuer}#alice", role:viewer, *:*  # alice, as her issuer names her\n')
    handle = start_gateway(state / "gw", upstream, authz={"policy_dir": str(authz), "reload_interval_seconds": 0.2},
                           oidc=[{"issuer": idp.issuer, "audiences": ["kubegate"], "jwks_ca_file": str(idp.ca_file),
                                  "groups_prefix": "sso:", "required_claims": {"hd": "example.com"}}])
    yield handle
    handle.stop()


def _kubectl(gw: GatewayHandle, tmp_path: Path, kubectl_path: str, token: str) -> Kubectl:
    """A kubeconfig whose user is an exec plugin handing over the ID token, as kubelogin does."""
    plugin = tmp_path / "login.py"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": token}}
    plugin.write_text(f"print({json.dumps(json.dumps(credential))})\n")
    import base64

    config: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config", "current-context": "sso",
        "clusters": [{"name": "gw", "cluster": {"server": gw.url, "certificate-authority-data":
                                                base64.b64encode(gw.ca_file.read_bytes()).decode()}}],
        "users": [{"name": "sso", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                     "command": sys.executable, "args": [str(plugin)],
                                                     "interactiveMode": "Never"}}}],
        "contexts": [{"name": "sso", "context": {"cluster": "gw", "user": "sso"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return Kubectl(kubectl_path, path)


@pytest.mark.kubectl
def test_login_through_the_provider(idp: oidc_provider.Provider, gw: GatewayHandle, tmp_path: Path,
                                    kubectl_path: str) -> None:
    kubectl = _kubectl(gw, tmp_path, kubectl_path, idp.id_token("alice"))
    who = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert who["username"] == f"{idp.issuer}#alice"
    assert "sso:team-shop" in who["groups"]
    # The quoted binding for "<issuer>#alice" makes her a viewer: she reads, she may not delete.
    assert kubectl("get", "pods", "-n", "default").returncode == 0
    refused = kubectl("delete", "configmap", "x", "-n", "default", check=False)
    assert refused.returncode == 1 and "Forbidden" in refused.stderr


@pytest.mark.kubectl
def test_a_token_without_the_required_claim_is_refused(idp: oidc_provider.Provider, gw: GatewayHandle,
                                                       tmp_path: Path, kubectl_path: str) -> None:
    kubectl = _kubectl(gw, tmp_path, kubectl_path, idp.id_token("mallory"))
    out = kubectl("get", "pods", "-n", "default", check=False)
    assert out.returncode == 1
    assert "the token's 'hd' claim is not 'example.com', which this issuer requires" in out.stderr
    failures = [e for e in gw.audit_events() if (e.get("annotations") or {}).get("kubegate.io/authn-failure")]
    assert failures and failures[-1]["annotations"]["kubegate.io/authn-failure"] == "bad-claims"


def test_doctor_finds_the_provider_by_discovery(idp: oidc_provider.Provider, gw: GatewayHandle) -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "kubegate", "doctor", "-c", str(gw.settings.state / "kubegate.yaml")],
                         capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stdout.splitlines() if f"oidc[0] {idp.issuer}" in line]
    assert any(f"discovery: issuer '{idp.issuer}'" in line and line.startswith("[  ok]") for line in lines), out.stdout
    assert any("jwks: " in line and "1 key(s)" in line and line.startswith("[  ok]") for line in lines), out.stdout
