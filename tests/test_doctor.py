"""What `kubegate serve` refuses to start with, and what `kubegate doctor` finds: each broken
setting named by its key and file, a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubegate import pki
from kubegate.emulator import harness
from tests.conftest import emulator_cluster, write_gateway_config
from tests.redis_server import RedisServer


def kubegate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", *args], capture_output=True, text=True, timeout=90)


def _config(tmp_path: Path, emu: harness.RunningEmulator, *, cluster: dict[str, Any] | None = None,
            **extra: Any) -> Path:
    return write_gateway_config(tmp_path / "gw", [cluster or emulator_cluster(emu)], **extra)


def _pem_key(tmp_path: Path, name: str, curve: ec.EllipticCurve = ec.SECP256R1()) -> Path:
    path = tmp_path / name
    path.write_bytes(ec.generate_private_key(curve).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def _pair(tmp_path: Path, name: str, hosts: list[str]) -> tuple[Path, Path]:
    leaf = pki.make_leaf(pki.make_ca(f"{name}-ca"), name, hosts)
    leaf.write(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    return tmp_path / f"{name}.crt", tmp_path / f"{name}.key"


Case = Callable[[Path, harness.RunningEmulator], dict[str, Any]]


def _mismatched_tls(tmp_path: Path, emu: harness.RunningEmulator) -> dict[str, Any]:
    cert, _ = _pair(tmp_path, "one", ["127.0.0.1"])
    _, key = _pair(tmp_path, "two", ["127.0.0.1"])
    return {"tls": {"cert_file": str(cert), "key_file": str(key)}}


def _garbage_signing_key(tmp_path: Path, emu: harness.RunningEmulator) -> dict[str, Any]:
    (tmp_path / "signing.key").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    return {"issuer": {"signing_key_file": str(tmp_path / "signing.key")}}


def _key_not_for_algorithm(tmp_path: Path, emu: harness.RunningEmulator) -> dict[str, Any]:
    return {"issuer": {"signing_key_file": str(_pem_key(tmp_path, "p256.key")), "algorithm": "ES384"}}


def _broken_jwks(tmp_path: Path, emu: harness.RunningEmulator) -> dict[str, Any]:
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "RSA", "n": "%%%"')
    return {"oidc": [{"issuer": "https://sso.example", "audiences": ["kubegate"], "jwks_file": str(tmp_path / "jwks.json")}]}


def _unwritable_audit(tmp_path: Path, emu: harness.RunningEmulator) -> dict[str, Any]:
    (tmp_path / "a-file").write_text("")
    return {"audit": {"path": str(tmp_path / "a-file" / "audit.jsonl")}}


CLUSTER_CASES: dict[str, tuple[Callable[[Path, harness.RunningEmulator], dict[str, Any]], str]] = {
    "unresolvable-host": (lambda p, emu: {"server": "https://no-such-host.invalid:6443"},
                          "clusters[0] emu: its host 'no-such-host.invalid' does not resolve"),
    "non-pem-ca": (lambda p, emu: (p / "ca.crt").write_text("not a certificate") and {"ca_file": str(p / "ca.crt")},
                   "clusters[0] emu: its CA"),
}
SERVE_CASES: dict[str, tuple[Case, str]] = {
    "mismatched-tls": (_mismatched_tls, "do not belong together (different keys)"),
    "garbage-signing-key": (_garbage_signing_key, "issuer.signing_key_file: "),
    "key-not-for-algorithm": (_key_not_for_algorithm, "issuer.algorithm ES384 needs an EC P-384 key"),
    "broken-jwks": (_broken_jwks, "oidc[0].jwks_file: "),
    "unwritable-audit": (_unwritable_audit, "audit.path: "),
}


@pytest.mark.parametrize("case", [*SERVE_CASES, *CLUSTER_CASES])
def test_serve_refuses_to_start_naming_the_setting(case: str, tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    if case in SERVE_CASES:
        make, expected = SERVE_CASES[case]
        config = _config(tmp_path, upstream, **make(tmp_path, upstream))
    else:
        change, expected = CLUSTER_CASES[case]
        config = _config(tmp_path, upstream, cluster={**emulator_cluster(upstream), **change(tmp_path, upstream)})
    out = kubegate("serve", "-c", str(config))
    assert out.returncode == 2, out.stderr
    assert f"problem(s) in {config}:" in out.stderr and expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    doctor = kubegate("doctor", "-c", str(config))
    assert doctor.returncode == 1 and expected in doctor.stdout and "Traceback" not in doctor.stderr


def test_serve_refuses_a_busy_port_and_doctor_notes_it(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = _config(tmp_path, upstream, listen={"port": port})
        out = kubegate("serve", "-c", str(config))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert f"listen.port: cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr, out.stderr
        # The gateway itself holds its port while it runs: doctor notes it and does not fail on it.
        doctor = kubegate("doctor", "-c", str(config))
        assert doctor.returncode == 0 and f"[note] listen.port: cannot listen on 127.0.0.1:{port}" in doctor.stdout


def _doctor_lines(out: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {line.split("] ", 1)[1].split(": ", 1)[0]: line for line in out.stdout.splitlines() if line.startswith("[")}


def test_doctor_passes_a_working_setup(tmp_path: Path, upstream: harness.RunningEmulator,
                                       redis_server: RedisServer) -> None:
    config = _config(tmp_path, upstream, store={"redis_url": redis_server.url})
    out = kubegate("doctor", "-c", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = _doctor_lines(out)
    assert "knows the gateway as 'system:serviceaccount:kubegate-system:kubegate'" in lines["clusters[0] emu"]
    assert lines["clusters[0] emu impersonation"].startswith("[  ok]")
    assert lines["clusters[0] emu clock"].startswith("[  ok]")
    assert "Redis answers PING" in lines["store.redis_url"]
    assert out.stdout.rstrip().endswith("checks passed")


@pytest.mark.parametrize(("change", "check", "expected"), [
    pytest.param(lambda p, emu: {"token": "not-the-gateways"}, "clusters[0] emu", "refused the gateway's credential (401)",
                 id="refused-credential"),
    pytest.param(lambda p, emu: {"token": emu.plain_token}, "clusters[0] emu impersonation",
                 "may not impersonate users, groups, serviceaccounts, authentication.k8s.io/uids", id="no-impersonation"),
    pytest.param(lambda p, emu: {"ca_file": str(_pair(p, "other", ["127.0.0.1"])[0])}, "clusters[0] emu",
                 "CERTIFICATE_VERIFY_FAILED", id="wrong-ca"),
    pytest.param(lambda p, emu: {"tls_server_name": "not-the-apiserver"}, "clusters[0] emu",
                 "certificate is not valid for 'not-the-apiserver'", id="wrong-tls-name"),
])
def test_doctor_names_what_the_cluster_refuses(change: Callable[[Path, harness.RunningEmulator], dict[str, Any]],
                                               check: str, expected: str, tmp_path: Path,
                                               upstream: harness.RunningEmulator) -> None:
    config = _config(tmp_path, upstream, cluster={**emulator_cluster(upstream), **change(tmp_path, upstream)})
    out = kubegate("doctor", "-c", str(config))
    assert out.returncode == 1, out.stdout
    line = _doctor_lines(out)[check]
    assert line.startswith("[FAIL]") and expected in line, out.stdout


def test_doctor_fails_a_dead_redis_and_a_certificate_users_cannot_verify(tmp_path: Path,
                                                                          upstream: harness.RunningEmulator) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    config = _config(tmp_path, upstream, store={"redis_url": f"redis://127.0.0.1:{dead}/0"},
                     public_url="https://kubegate.example.com:8443")
    out = kubegate("doctor", "-c", str(config))
    assert out.returncode == 1
    lines = _doctor_lines(out)
    assert lines["store.redis_url"].startswith("[FAIL]")
    assert lines["public_url"].startswith("[FAIL]") and "not name 'kubegate.example.com'" in lines["public_url"]
    assert json.dumps(out.stdout).count("Traceback") == 0


def test_doctor_checks_the_policies_and_the_audit_policy(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    """A policy set `policy check` rejects (and `serve` would refuse) fails doctor too, naming its
    problems; -o json gives the same checks to a script."""
    broken_audit = tmp_path / "audit-policy.yaml"
    broken_audit.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n")
    config = _config(tmp_path, upstream, audit={"policy_file": str(broken_audit)},
                     gate_files={"rules.yaml": "rules:\n  - id: r\n    outcome: explode\n"})
    out = kubegate("doctor", "-c", str(config))
    assert out.returncode == 1
    lines = _doctor_lines(out)
    assert lines["gates.policy_dir"].startswith("[FAIL]") and "rule r.outcome must be one of" in lines["gates.policy_dir"]
    assert lines["audit.policy_file"].startswith("[FAIL]")
    assert lines["authz.policy_dir"].startswith("[  ok]") and "rules" in lines["authz.policy_dir"]
    report = json.loads(kubegate("doctor", "-c", str(config), "-o", "json").stdout)
    by_check = {c["check"]: c for c in report["checks"]}
    assert report["problems"] >= 2 and by_check["gates.policy_dir"]["result"] == "FAIL"
    assert "rule r.outcome" in by_check["gates.policy_dir"]["detail"]
