"""Time-bound access end to end: kubegate access CLI, the gateway's API, and real kubectl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, start_gateway
from tests.gateway.conftest import Response, send


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayHandle, Path]]:
    state = tmp_path_factory.mktemp("access")
    upstream = harness.start(state / "emulator")
    upstream.kubeconfig(state / "admin")
    gw = start_gateway(state / "gw", upstream)
    yield gw, state
    gw.stop()
    upstream.stop()


def access(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", "access", *args, "--kubeconfig", str(kubeconfig)],
                          capture_output=True, text=True, timeout=60)


def test_request_approve_use(env: tuple[GatewayHandle, Path], kubectl_path: str) -> None:
    gw, state = env
    dan_kc = gw.kubeconfig(state / "dan", "dan", ("team-shop",))
    sam_kc = gw.kubeconfig(state / "sam", "sam", ("kubegate:sre",))
    vic_kc = gw.kubeconfig(state / "vic", "vic", ("kubegate:viewers",))
    Kubectl(kubectl_path, gw.kubeconfig(state / "ada", "ada")).__call__("create", "namespace", "payments")
    dan = Kubectl(kubectl_path, dan_kc)
    assert dan("create", "configmap", "c1", "-n", "payments", check=False).returncode == 1

    out = access(dan_kc, "request", "--role", "developer", "--cluster", "emu", "--namespace", "payments",
                 "--for", "10m", "--reason", "hotfix INC-7")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.split()[0]
    assert "pending" in out.stdout

    own = access(dan_kc, "approve", request_id)
    assert own.returncode == 1 and "nobody may decide on their own access request" in own.stderr
    viewer = access(vic_kc, "approve", request_id)
    assert viewer.returncode == 1 and 'user "vic" may not approve role developer' in viewer.stderr
    assert dan("create", "configmap", "c1", "-n", "payments", check=False).returncode == 1  # still pending

    approved = access(sam_kc, "approve", request_id)
    assert approved.returncode == 0 and "approved" in approved.stdout and "by sam" in approved.stdout
    assert "configmap/c1 created" in dan("create", "configmap", "c1", "-n", "payments").stdout
    assert dan("create", "configmap", "c2", "-n", "default", check=False).returncode == 1  # only where granted

    for who in (dan_kc, sam_kc):  # the requester and those who may decide see it, with its reason
        listed = access(who, "list")
        assert request_id in listed.stdout and "approved" in listed.stdout and "hotfix INC-7" in listed.stdout
    listed = access(vic_kc, "list")
    assert listed.returncode == 0 and request_id not in listed.stdout
    steps = [e["annotations"]["kubegate.io/access-event"] for e in gw.audit_events()
             if "kubegate.io/access-event" in e.get("annotations", {})]
    assert steps == ["requested", "approved"]
    api_calls = [e for e in gw.audit_events() if e["requestURI"].startswith("/kubegate/v1/accessrequests")
                 and "kubegate.io/access-event" not in e["annotations"]]
    assert {e["annotations"]["kubegate.io/decision"] for e in api_calls} == {"local", "deny"}


def test_malformed_request_is_400(env: tuple[GatewayHandle, Path]) -> None:
    from tests.gateway.conftest import send

    gw, _ = env
    resp = send(gw.port, gw.ca_file, "POST", "/kubegate/v1/accessrequests", body=b"{not json",
                headers={"Authorization": f"Bearer {gw.token('dan', ('team-shop',))}"})
    assert resp.status == 400 and resp.json()["code"] == 400
    resp = send(gw.port, gw.ca_file, "POST", "/kubegate/v1/accessrequests",
                body=b'{"role":"developer","cluster":"emu","durationSeconds":60,"reason":"x"}')
    assert resp.status == 401  # the access API needs a token like everything else


@pytest.mark.kubectl
def test_a_ten_minute_grant_lets_kubectl_act_and_lapses_on_a_fake_clock(tmp_path: Path, kubectl_path: str) -> None:
    import time

    from tests.conftest import start_gateway_in_process

    class Clock:
        now = time.time()

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    upstream = harness.start(tmp_path / "emulator")
    gw = start_gateway_in_process(tmp_path / "gw", upstream, clock=clock)
    try:
        Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "ada", "ada"))("create", "namespace", "payments")
        dan_kc = gw.kubeconfig(tmp_path / "dan", "dan", ("team-shop",))
        dan = Kubectl(kubectl_path, dan_kc)
        before = dan("create", "configmap", "c1", "-n", "payments", check=False)
        assert before.returncode == 1 and 'user "dan" may not create configmaps' in before.stderr
        out = access(dan_kc, "request", "--role", "developer", "--cluster", "emu", "--namespace", "payments",
                     "--for", "10m", "--reason", "hotfix INC-9")
        approved = access(gw.kubeconfig(tmp_path / "sam", "sam", ("kubegate:sre",)), "approve", out.stdout.split()[0])
        assert approved.returncode == 0, approved.stderr
        assert "configmap/c1 created" in dan("create", "configmap", "c1", "-n", "payments").stdout
        clock.now += 9 * 60
        assert "configmap/c2 created" in dan("create", "configmap", "c2", "-n", "payments").stdout
        clock.now += 61  # past the ten minutes: no restart, no request needed to notice
        refused = dan("create", "configmap", "c3", "-n", "payments", check=False)
        assert refused.returncode == 1 and 'user "dan" may not create configmaps' in refused.stderr
        steps = [e["annotations"]["kubegate.io/access-event"] for e in gw.audit_events()
                 if "kubegate.io/access-event" in e.get("annotations", {})]
        assert steps == ["requested", "approved", "expired"]
    finally:
        gw.stop()
        upstream.stop()


def _post(gw: GatewayHandle, user: str, body: bytes) -> Response:
    return send(gw.port, gw.ca_file, "POST", "/kubegate/v1/accessrequests", body=body,
                headers={"Authorization": f"Bearer {gw.token(user, ['kubegate:viewers'])}",
                         "Content-Type": "application/json"})


def test_a_flood_of_access_requests_is_refused(env: tuple[GatewayHandle, Path]) -> None:
    gw, _ = env
    spec = {"role": "developer", "cluster": "emu", "namespace": "payments", "durationSeconds": 600}
    answers = [_post(gw, "flo", json.dumps({**spec, "reason": f"r{i}"}).encode()).status for i in range(7)]
    assert answers == [201] * 5 + [429] * 2
    huge = _post(gw, "flo2", json.dumps({**spec, "reason": "x" * (3 * 1024 * 1024)}).encode())
    assert huge.status == 413 and huge.json()["kind"] == "Status"
    stranger = _post(gw, "flo3", json.dumps({**spec, "cluster": "does-not-exist", "reason": "x"}).encode())
    assert stranger.status == 400 and "no cluster named" in stranger.json()["message"]


def test_kubegates_own_api_is_rate_limited_per_user(env: tuple[GatewayHandle, Path]) -> None:
    gw, _ = env
    token = gw.token("quinn", ["kubegate:viewers"])
    codes = [send(gw.port, gw.ca_file, "GET", "/kubegate/v1/approvals",
                  headers={"Authorization": f"Bearer {token}"}) for _ in range(30)]
    refused = [r for r in codes if r.status == 429]
    assert refused and all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert "too many calls to kubegate's API" in refused[0].json()["message"]
    other = send(gw.port, gw.ca_file, "GET", "/kubegate/v1/approvals",
                 headers={"Authorization": f"Bearer {gw.token('rita', ['kubegate:viewers'])}"})
    assert other.status == 200  # one user's flood is that user's alone
