"""What must never get through: bad tokens, impersonation, path tricks, bugs, oversized bodies."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import uuid
from collections import Counter
from pathlib import Path

import pytest

from kubegate.emulator import harness
from kubegate.gateway.identity.authn import TokenIssuer
from kubegate.gateway.context import GateContext
from tests.conftest import ADMIN_GROUPS, Kubectl, memory_kib, start_gateway, start_gateway_in_process, wait_until
from tests.gateway.gates.test_change import ReviewServer
from tests.gateway.conftest import Isolated, assert_status
from tests.gateway.identity.test_authn import _bad_tokens

PODS = "/api/v1/namespaces/default/pods"


def test_allowed_request_is_forwarded_as_the_caller(isolated: Isolated) -> None:
    token = isolated.gw.token("alice", ["kubegate:viewers", "oncall"])
    resp = isolated.send("GET", PODS, token=token,
                         headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters",
                                  "X-Forwarded-For": "10.9.9.9"})
    assert resp.status == 200
    (record,) = isolated.upstream.requests
    assert record.authenticated == "system:serviceaccount:kubegate-system:kubegate"  # the gateway's credential
    assert record.impersonation == {"impersonate-user": ["alice"],
                                    "impersonate-group": ["kubegate:viewers", "oncall", "system:authenticated"]}
    assert token not in " ".join(v for _, v in record.headers)  # the client's token stays at the gateway
    assert record.header("X-Remote-User") == [] and record.header("X-Remote-Group") == []
    assert record.header("X-Forwarded-For") == ["127.0.0.1"]
    assert record.header("Audit-Id") == [resp.headers["audit-id"]]


@pytest.mark.parametrize("case", ["missing", "garbage", "basic-scheme", "alg-none", "hs256-with-public-key",
                                  "other-key-same-issuer", "expired", "wrong-audience", "wrong-issuer",
                                  "not-yet-valid", "no-exp"])
def test_bad_tokens_get_401_and_nothing_is_forwarded(isolated: Isolated, case: str) -> None:
    own = isolated.gw.issuer
    key_pem = (isolated.gw.settings.state / "tls" / "token-signing.key").read_bytes()
    headers = {} if case == "missing" else {"Authorization": _bad_tokens_live(own, key_pem)[case]}
    resp = isolated.send("GET", PODS, headers=headers)
    body = assert_status(resp, 401, "Unauthorized")
    assert body["message"].startswith("kubegate: ")
    assert isolated.upstream.requests == []
    (event,) = [e for e in isolated.audit_events() if e["auditID"] == resp.headers["audit-id"]]
    assert event["responseStatus"]["code"] == 401
    assert event["annotations"]["kubegate.io/decision"] == "deny"
    assert event["annotations"]["kubegate.io/stage"] == "authn"


def _bad_tokens_live(own: TokenIssuer, key_pem: bytes) -> dict[str, str]:
    import time

    from cryptography.hazmat.primitives.asymmetric import rsa

    return _bad_tokens(own, key_pem, rsa.generate_private_key(public_exponent=65537, key_size=2048), time.time())


def test_kubectl_as_is_forbidden_and_nothing_is_forwarded(isolated: Isolated, kubectl_path: str,
                                                          tmp_path: Path) -> None:
    kubectl = Kubectl(kubectl_path, isolated.gw.kubeconfig(tmp_path / "kc", "alice", ["dev"]))
    proc = kubectl("--as=admin", "--as-group=system:masters", "get", "pods", check=False)
    assert proc.returncode == 1
    # kubectl's discovery drops Status bodies; the message still reaches the user as a warning.
    assert "Warning: kubegate: impersonation headers (impersonate-group, impersonate-user) are not accepted" \
        in proc.stderr
    assert "Error from server (Forbidden)" in proc.stderr
    assert isolated.upstream.requests == []


@pytest.mark.parametrize("header", ["Impersonate-User", "Impersonate-Group", "Impersonate-Uid",
                                    "Impersonate-Extra-scopes", "impersonate-user"])
def test_smuggled_impersonation_headers_are_403(isolated: Isolated, header: str) -> None:
    resp = isolated.send("GET", PODS, token=isolated.gw.token("alice"), headers={header: "admin"})
    assert_status(resp, 403, "Forbidden")
    assert isolated.upstream.requests == []


@pytest.mark.parametrize("path", [
    "/api/v1/namespaces/default/pods/../secrets",
    "/api/v1/namespaces/default/pods/%2e%2e/secrets",
    "/api/v1/namespaces/default/pods/%2E%2E",
    "/api//v1/namespaces/default/pods",
    "/api/v1/namespaces/default%2Fkube-system/pods",
    "/api/v1/namespaces/default/pods/x%5c..",
    "/api/v1/namespaces/default/pods/x;y",
    "/api/v1/namespaces/default/pods/web/exec/junk",
    "/clusters/emu/../../api/v1/secrets",
    "/api/v1/namespaces/default/pods?watch=false&watch=true",
])
def test_path_tricks_get_400_and_nothing_is_forwarded(isolated: Isolated, path: str) -> None:
    resp = isolated.send("GET", path, token=isolated.gw.token("alice"))
    assert_status(resp, 400, "BadRequest")
    assert isolated.upstream.requests == []


class Explodes:
    name = "explodes"

    async def __call__(self, ctx: GateContext) -> None:
        raise RuntimeError("a bug in a gate")


def test_a_stage_that_raises_answers_500_and_forwards_nothing(tmp_path: Path) -> None:
    from kubegate.emulator import harness

    upstream = harness.start(tmp_path / "emu")
    hook = lambda stages: [*stages, Explodes()]  # noqa: E731 - after authentication and routing
    gw = start_gateway_in_process(tmp_path / "gw", upstream, stages_hook=hook)
    try:
        upstream.clear_requests()
        iso = Isolated(gw, upstream)
        resp = iso.send("GET", PODS, token=gw.token("alice"))
        body = assert_status(resp, 500, "InternalError")
        assert "explodes" in body["message"] and "not forwarded" in body["message"]
        assert upstream.requests == []
        (event,) = [e for e in gw.audit_events() if e["auditID"] == resp.headers["audit-id"]]
        assert event["annotations"]["kubegate.io/stage"] == "explodes"
        assert event["annotations"]["kubegate.io/decision"] == "error"
    finally:
        gw.stop()
        upstream.stop()


def test_oversized_body_is_413_and_forwards_nothing(isolated: Isolated) -> None:
    limit = isolated.gw.settings.max_request_body_bytes
    body = json.dumps({"metadata": {"name": "big"}, "data": {"x": "y" * (limit + 10)}}).encode()
    resp = isolated.send("POST", "/api/v1/namespaces/default/configmaps", token=isolated.gw.token("alice"),
                         headers={"Content-Type": "application/json"}, body=body)
    assert_status(resp, 413, "RequestEntityTooLarge")
    assert isolated.upstream.requests == []
    events = isolated.audit_events()
    assert [e["responseStatus"]["code"] for e in events] == [413]


def test_every_request_is_audited_exactly_once(isolated: Isolated, kubectl_path: str, tmp_path: Path) -> None:
    kubectl = Kubectl(kubectl_path, isolated.gw.kubeconfig(tmp_path / "kc", "alice"))
    kubectl("get", "pods")
    kubectl("run", "p", "--image=x")
    kubectl("exec", "p", "--", "echo", "hi")
    kubectl("--as=bob", "get", "pods", check=False)
    isolated.send("GET", PODS)  # unauthenticated
    isolated.send("GET", "/api/v1/namespaces/default/pods/%2e%2e", token=isolated.gw.token("alice"))
    events = isolated.audit_events()
    # One ResponseComplete per request; a long-running one (exec) has a ResponseStarted before it.
    complete = [e for e in events if e["stage"] == "ResponseComplete"]
    assert set(Counter(e["auditID"] for e in complete).values()) == {1}
    assert {e["auditID"] for e in events} == {e["auditID"] for e in complete}
    started = [e for e in events if e["stage"] == "ResponseStarted"]
    assert [e.get("objectRef", {}).get("subresource") for e in started] == ["exec"]
    decisions = Counter(e["annotations"]["kubegate.io/decision"] for e in complete)
    assert decisions["deny"] == 3
    exec_event = next(e for e in complete if e.get("objectRef", {}).get("subresource") == "exec")
    assert (exec_event["verb"], exec_event["user"]["username"]) == ("create", "alice")
    assert exec_event["responseStatus"]["code"] == 101


def test_token_session_reaches_the_cluster_as_an_extra(isolated: Isolated) -> None:
    token = isolated.gw.issuer.issue("alice", ["kubegate:viewers"], session="ws-42")
    assert isolated.send("GET", PODS, token=token).status == 200
    (record,) = isolated.upstream.requests
    assert record.user is not None and record.user.extra == {"kubegate.io/session": ("ws-42",)}
    assert record.header("Impersonate-Extra-kubegate.io%2Fsession") == ["ws-42"]


def _response_status(conn: ssl.SSLSocket) -> int:
    """The status of the next response on a raw connection, read whole (sized or chunked)."""
    response = http.client.HTTPResponse(conn)
    response.begin()
    response.read()
    return response.status


def test_bytes_sent_behind_a_waiting_request_are_not_read_into_memory(tmp_path: Path,
                                                                       upstream: harness.RunningEmulator) -> None:
    """While a request waits (here on a slow risk webhook), a client that keeps sending on the same
    connection is slowed down by TCP; the gateway does not read what it cannot yet handle."""
    checker = ReviewServer(tmp_path)
    hook = (f"webhooks:\n  - name: slow\n    url: https://127.0.0.1:{checker.port}/review\n"
            f"    ca_file: {checker.ca_file}\n    timeout: 10s\n    match: {{namespaces: [\"wh-slow*\"]}}\n")
    gw = start_gateway(tmp_path / "gw", upstream, gate_files={"webhooks.yaml": hook})
    try:
        assert gw.proc is not None
        namespace = f"wh-slow-{uuid.uuid4().hex[:6]}"
        token = gw.token("ada", ADMIN_GROUPS)
        context = ssl.create_default_context(cafile=str(gw.ca_file))
        body = json.dumps({"metadata": {"name": "waited"}}).encode()
        with socket.create_connection(("127.0.0.1", gw.port)) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            def send(method: str, path: str, payload: bytes) -> None:
                conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                             + payload)
            send("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": namespace}}).encode())
            assert _response_status(conn) == 201
            Path(f"/proc/{gw.proc.pid}/clear_refs").write_text("5")  # the peak RSS starts again from now
            before = memory_kib(gw.proc.pid, "VmRSS")
            send("POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
            wait_until(lambda: any(r["request"]["requestInfo"]["namespace"] == namespace for r in checker.reviews),
                       10, "the change did not reach the risk webhook")
            conn.settimeout(1.0)
            sent, chunk = 0, b"x" * (1 << 20)
            for _ in range(64):  # at most 64 MiB; stops at the first send that cannot go on for 1 s
                try:
                    conn.sendall(chunk)
                except TimeoutError:
                    break
                sent += len(chunk)
            grew_mib = (memory_kib(gw.proc.pid, "VmHWM") - before) / 1024
            assert sent < 32 << 20, f"the gateway took {sent >> 20} MiB behind a request that was still waiting"
            assert grew_mib < 24, f"the gateway grew by {grew_mib:.0f} MiB"
            conn.settimeout(15)
            answer = _response_status(conn)
        assert answer == 201  # the waiting change was carried out and answered
    finally:
        gw.stop()
        checker.stop()
