"""A logout ends the streams opened with its session (on whichever process serves them), and the
end of a token's lifetime ends the streams opened with it: each with an audit event saying why."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, start_gateway

WATCH = "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=120"


def _watch(gw: GatewayHandle, token: str) -> requests.Response:
    answer = requests.get(gw.url + WATCH, headers={"Authorization": f"Bearer {token}"}, verify=str(gw.ca_file),
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
