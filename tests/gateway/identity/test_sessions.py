"""Session tokens (/kubegate/v1/sessions): minted for the caller, bound to a session id the
cluster and the audit log both see, no longer-lived than the login presented, ended for every
replica by the session itself."""

from __future__ import annotations

import json
import time
from typing import Any

import urllib3

from tests.conftest import GatewayHandle


def _call(gw: GatewayHandle, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    http = urllib3.PoolManager(ca_certs=str(gw.ca_file), retries=False)
    resp = http.request(method, gw.url + path, body=json.dumps(body).encode() if body is not None else None,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return resp.status, json.loads(resp.data or b"{}")


def test_a_session_token_acts_as_its_user_under_its_session_id(gateway: GatewayHandle) -> None:
    code, session = _call(gateway, "POST", "/kubegate/v1/sessions", gateway.token("ada"), {"ttlSeconds": 600})
    assert code == 201, session
    sid, token = session["id"], session["token"]
    assert session["user"] == "ada" and session["expiresAt"] <= time.time() + 601
    gateway.upstream.clear_requests()
    assert _call(gateway, "GET", "/api/v1/namespaces/default/configmaps", token)[0] == 200
    seen = [r.user for r in gateway.upstream.requests if r.path.endswith("/configmaps")]
    assert seen and seen[-1].username == "ada" and seen[-1].extra.get("kubegate.io/session") == (sid,)
    events = [e for e in gateway.audit_events() if (e.get("user") or {}).get("extra", {}).get("kubegate.io/session")
              == [sid]]
    assert events and events[-1]["requestURI"] == "/api/v1/namespaces/default/configmaps"
    # A session cannot start another (which would outlive it).
    code, refused = _call(gateway, "POST", "/kubegate/v1/sessions", token, {"ttlSeconds": 600})
    assert code == 403 and "cannot start another session" in refused["message"]


def test_a_session_lives_no_longer_than_the_login_presented(gateway: GatewayHandle) -> None:
    code, session = _call(gateway, "POST", "/kubegate/v1/sessions", gateway.token("ada", ttl=300),
                          {"ttlSeconds": 3600})
    assert code == 201 and session["expiresAt"] <= time.time() + 301


def test_ending_a_session_stops_its_token(gateway: GatewayHandle) -> None:
    _, mine = _call(gateway, "POST", "/kubegate/v1/sessions", gateway.token("ada"), {"ttlSeconds": 600})
    _, theirs = _call(gateway, "POST", "/kubegate/v1/sessions", gateway.token("bob"), {"ttlSeconds": 600})
    code, refused = _call(gateway, "DELETE", f"/kubegate/v1/sessions/{mine['id']}", theirs["token"])
    assert code == 403 and "only the session's own token ends it" in refused["message"]
    assert _call(gateway, "DELETE", f"/kubegate/v1/sessions/{mine['id']}", mine["token"])[0] == 200
    code, status = _call(gateway, "GET", "/api/v1/namespaces/default/configmaps", mine["token"])
    assert code == 401 and f"session {mine['id']} has ended" in status["message"]
    assert _call(gateway, "GET", "/api/v1/namespaces/default/configmaps", theirs["token"])[0] == 200
    ended = [e for e in gateway.audit_events()
             if (e.get("annotations") or {}).get("kubegate.io/authn-failure") == "revoked"]
    assert ended
