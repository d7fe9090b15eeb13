"""A logout ends the streams opened with its session (on whichever replica and worker serves them,
watches and exec sessions alike), and the end of a token's lifetime or of the grant that allowed
a stream ends it: each with an audit event saying why."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, start_gateway, start_replicas, unique

WATCH = "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=120"


def _watch(gw: GatewayHandle, token: str, ca_file: Path | None = None) -> requests.Response:
    answer = requests.get(gw.url + WATCH, headers={"Authorization": f"Bearer {token}"},
                          verify=str(ca_file or gw.ca_file),
                          stream=True, timeout=(10, 60))
    assert answer.status_code == 200, answer.text
    return answer


def _ends(answer: requests.Response, bound: float = 30) -> bool:
    """Whether the stream ends (the connection closes) within BOUND seconds (a bound for the test,
    not a measurement)."""
    deadline = time.monotonic() + bound
    try:
        for _ in answer.iter_content(chunk_size=None):
            if time.monotonic() > deadline:
                return False
    except requests.RequestException:
        pass
    return time.monotonic() <= deadline


def _closed_event(gw: GatewayHandle, audit_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        found = [e for e in gw.audit_events() if e["auditID"] == audit_id and e["stage"] == "ResponseComplete"]
        if found or time.monotonic() > deadline:
            assert found, audit_id
            return found[0]
        time.sleep(0.1)


def test_a_logout_ends_the_watches_of_its_session(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        login = requests.post(f"{gw.url}/kubegate/v1/sessions", json={"ttlSeconds": 3600}, verify=str(gw.ca_file),
                              headers={"Authorization": f"Bearer {gw.token('ada')}"}, timeout=10).json()
        session, sid = login["token"], login["id"]
        watch = _watch(gw, session)
        other = _watch(gw, gw.token("bea"))  # someone else's: goes on
        ended = requests.delete(f"{gw.url}/kubegate/v1/sessions/{sid}", verify=str(gw.ca_file), timeout=10,
                                headers={"Authorization": f"Bearer {session}"})
        assert ended.status_code == 200
        assert _ends(watch)
        event = _closed_event(gw, watch.headers["Audit-Id"])
        assert f"its session {sid} has ended" in event["annotations"]["kubegate.io/stream-closed"]
        assert requests.get(gw.url + WATCH, headers={"Authorization": f"Bearer {session}"}, verify=str(gw.ca_file),
                            timeout=10).status_code == 401
        assert not [e for e in gw.audit_events() if e["auditID"] == other.headers["Audit-Id"]
                    and e["stage"] == "ResponseComplete"]  # the other user's watch is still open
        other.close()
    finally:
        gw.stop()


def test_a_token_that_expires_ends_its_watch(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        short = gw.issuer.issue("ada", ["kubegate:cluster-admins"], ttl_seconds=1)  # 1 s (and 30 s of leeway)
        watch = _watch(gw, short)
        assert _ends(watch, bound=60)
        event = _closed_event(gw, watch.headers["Audit-Id"])
        assert event["annotations"]["kubegate.io/stream-closed"] == "the token it was opened with has expired"
        assert json.dumps(event["user"]).count("ada")
    finally:
        gw.stop()


def test_a_lapsed_grant_ends_the_watch_it_allowed(tmp_path: Path, upstream: harness.RunningEmulator,
                                                   kubectl_path: str) -> None:
    """A time-bound grant lets a contractor (who may read nothing) watch a namespace; when it lapses,
    the watch is ended."""
    gw = start_gateway(tmp_path / "gw", upstream)
    namespace = unique("granted")
    try:
        Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "ada", "ada"))("create", "namespace", namespace)
        eve, sam = gw.token("eve", ["contractors"]), gw.token("sam", ["kubegate:sre"])
        url = f"{gw.url}/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=120"
        before = requests.get(url, headers={"Authorization": f"Bearer {eve}"}, verify=str(gw.ca_file), timeout=10)
        assert before.status_code == 403

        def call(method: str, path: str, token: str, body: Any = None) -> requests.Response:
            return requests.request(method, f"{gw.url}/kubegate/v1/{path}", json=body, verify=str(gw.ca_file),
                                    headers={"Authorization": f"Bearer {token}"}, timeout=10)
        asked = call("POST", "accessrequests", eve, {"role": "viewer", "cluster": "emu", "namespace": namespace,
                                                     "durationSeconds": 8, "reason": "INC-9"})
        assert asked.status_code == 201, asked.text
        approved = call("POST", f"accessrequests/{asked.json()['id']}/approve", sam)
        assert approved.status_code == 200, approved.text
        watch = requests.get(url, headers={"Authorization": f"Bearer {eve}"}, verify=str(gw.ca_file), stream=True,
                             timeout=(10, 60))
        assert watch.status_code == 200, watch.text
        assert _ends(watch, bound=40)
        event = _closed_event(gw, watch.headers["Audit-Id"])
        assert event["annotations"]["kubegate.io/stream-closed"].startswith("access to it has ended")
    finally:
        gw.stop()


def test_a_logout_on_one_replica_ends_exec_and_watch_on_the_others_workers(
        tmp_path: Path, kubectl_path: str) -> None:
    """Two replicas sharing Redis, the second with two workers: a session's `kubectl exec -i` (SPDY,
    real kubectl) and watch on the second replica end when the session is logged out on the first."""
    started = contextlib.ExitStack()  # whatever started is stopped, even when a later start fails
    cat: subprocess.Popen[bytes] | None = None
    try:
        upstream = harness.start(tmp_path / "emulator")
        started.callback(upstream.stop)
        _, a, b = start_replicas(started, tmp_path, upstream, "rv")
        admin = Kubectl(kubectl_path, a.kubeconfig(tmp_path / "admin", "ada"))
        admin("run", "shell", "--image=busybox")
        login = requests.post(f"{a.url}/kubegate/v1/sessions", json={"ttlSeconds": 3600}, verify=str(a.ca_file),
                              headers={"Authorization": f"Bearer {a.token('ada')}"}, timeout=10).json()
        harness.write_kubeconfig(tmp_path / "session", b.url, a.ca_file.read_text(), login["token"], user="ada")
        cat = subprocess.Popen([kubectl_path, "--kubeconfig", str(tmp_path / "session"), "exec", "-i", "shell",
                                "--", "cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert cat.stdin is not None and cat.stdout is not None
        cat.stdin.write(b"still here\n")
        cat.stdin.flush()
        assert cat.stdout.readline() == b"still here\n"  # the session streams through the second replica
        watch = _watch(b, login["token"], a.ca_file)  # b serves with a's certificate
        ended = requests.delete(f"{a.url}/kubegate/v1/sessions/{login['id']}", verify=str(a.ca_file), timeout=10,
                                headers={"Authorization": f"Bearer {login['token']}"})
        assert ended.status_code == 200
        assert cat.wait(30) != 0  # kubectl exec ends with the connection the gateway closed
        assert _ends(watch)
        watch.close()
        closed = [e for e in b.audit_events() if "kubegate.io/stream-closed" in e["annotations"]]
        assert sorted(e["objectRef"].get("subresource", "") for e in closed) == ["", "exec"]
        assert all(f"its session {login['id']} has ended" in e["annotations"]["kubegate.io/stream-closed"]
                   for e in closed)
    finally:
        if cat is not None:
            if cat.poll() is None:
                cat.kill()
                cat.wait(10)
            for pipe in (cat.stdin, cat.stdout, cat.stderr):
                if pipe is not None:
                    pipe.close()
        started.close()
