"""Headers and framing: what a client says about its connection, its audit id or its identity never
travels upstream; oversized header blocks and trailers get a Status and the gateway serves on."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from kubegate.gateway.clusters.forwarding import header_edits
from tests.gateway.conftest import Isolated

P = pytest.param
PODS = "/api/v1/namespaces/default/pods"


@pytest.mark.parametrize(("headers", "removed", "set_to"), [
    P([("Audit-Id", "mine")], {"audit-id"}, {}, id="audit-id"),
    P([("X-Remote-Uid", "0"), ("X-Remote-Extra-Scopes", "all"), ("x-remote-whatever", "x")],
      {"x-remote-uid", "x-remote-extra-scopes", "x-remote-whatever"}, {}, id="x-remote-any"),
    P([("Connection", "keep-alive, X-Custom"), ("X-Custom", "1"), ("Keep-Alive", "timeout=5")],
      {"x-custom", "keep-alive"}, {"Connection": "keep-alive"}, id="connection-named"),
    P([("Connection", "Authorization, Impersonate-User")], {"authorization", "impersonate-user"},
      {"Connection": "keep-alive"}, id="connection-names-credentials"),
    P([("Connection", "Upgrade"), ("Upgrade", "websocket")], set(), {"Connection": "upgrade"}, id="upgrade-kept"),
    P([("TE", "trailers"), ("Trailer", "X-Sum"), ("Proxy-Connection", "keep-alive")],
      {"te", "trailer", "proxy-connection"}, {}, id="hop-by-hop"),
    P([("Sec-WebSocket-Protocol", "base64url.bearer.authorization.k8s.io.c2VjcmV0, v5.channel.k8s.io")],
      set(), {"Sec-WebSocket-Protocol": "v5.channel.k8s.io"}, id="bearer-subprotocol"),
    P([("Sec-WebSocket-Protocol", "base64url.bearer.authorization.k8s.io.c2VjcmV0")],
      {"sec-websocket-protocol"}, {}, id="only-bearer-subprotocol"),
    P([("Content-Type", "application/json"), ("User-Agent", "kubectl"), ("Accept", "application/json")],
      set(), {}, id="ordinary-headers-kept"),
])
def test_header_edits(headers: list[tuple[str, str]], removed: set[str], set_to: dict[str, str]) -> None:
    assert header_edits(headers) == (removed, set_to)


def test_client_audit_ids_and_remote_headers_stay_at_the_gateway(isolated: Isolated) -> None:
    token = isolated.gw.token("alice", ["kubegate:viewers"])
    resp = isolated.send("GET", PODS, token=token, headers={
        "Audit-Id": "forged-audit-id", "X-Remote-Uid": "0", "X-Remote-Extra-Scopes": "cluster-admin",
        "Sec-WebSocket-Protocol": f"base64url.bearer.authorization.k8s.io.{token}, v5.channel.k8s.io"})
    assert resp.status == 200
    (record,) = isolated.upstream.requests
    assert record.header("Audit-Id") == [resp.headers["audit-id"]]
    assert not [name for name, _ in record.headers if name.lower().startswith("x-remote-")]
    assert record.header("Sec-WebSocket-Protocol") == ["v5.channel.k8s.io"]
    assert token not in " ".join(v for _, v in record.headers)


def test_a_connection_header_cannot_take_the_gateways_own_headers_off(isolated: Isolated) -> None:
    # An intermediary before the apiserver (here the Go front, a net/http ReverseProxy) drops what a
    # request's Connection header names: the gateway's credential and impersonation must survive it.
    token = isolated.gw.token("alice", ["kubegate:viewers"])
    resp = isolated.send("GET", PODS, token=token,
                         headers={"Connection": "keep-alive, Authorization, Impersonate-User, Impersonate-Group"})
    assert resp.status == 200
    (record,) = isolated.upstream.requests
    assert record.authenticated == "system:serviceaccount:kubegate-system:kubegate"
    assert record.impersonation["impersonate-user"] == ["alice"]


def _raw(isolated: Isolated, data: bytes, timeout: float = 10) -> bytes:
    ctx = ssl.create_default_context(cafile=str(isolated.gw.ca_file))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", isolated.gw.port), timeout=timeout),
                         server_hostname="127.0.0.1") as s:
        s.sendall(data)
        out = b""
        while True:  # these answers close the connection: read to the end, headers and body
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            out += chunk
        return out


def test_an_oversized_header_block_is_431_before_it_is_read(isolated: Isolated) -> None:
    token = isolated.gw.token("alice", ["kubegate:viewers"])
    head = f"GET {PODS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n".encode()
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(1100))  # ~1.1 MiB, no end yet
    answer = _raw(isolated, head + pad)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b'"reason":"RequestHeaderFieldsTooLarge"' in answer
    assert isolated.upstream.requests == []
    assert isolated.send("GET", PODS, token=token).status == 200  # and it serves on


def test_a_request_with_trailers_is_400_and_the_gateway_serves_on(isolated: Isolated) -> None:
    token = isolated.gw.token("ada", ["kubegate:cluster-admins"])
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"trailed"}}'
    request = (f"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    request += f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\nX-Checksum: 42\r\n\r\n"
    answer = _raw(isolated, request)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"trailers are not accepted" in answer
    assert isolated.upstream.requests == []
    # The client has its answer before mitmproxy reports the failed flow: wait for its audit event.
    deadline = time.monotonic() + 10
    while not (events := [e for e in isolated.audit_events() if e["responseStatus"]["code"] == 400
                          and "trailers" in e["responseStatus"].get("message", "")]):
        assert time.monotonic() < deadline, "the refused request was not audited"
        time.sleep(0.05)
    assert isolated.send("GET", PODS, token=token).status == 200


@pytest.mark.parametrize("fold", [" ", "\t", "  \t "])
@pytest.mark.parametrize("header", ["X-Note", "Content-Type", "Authorization"])
def test_a_folded_header_is_400_and_nothing_is_forwarded(isolated: Isolated, fold: str, header: str) -> None:
    """RFC 9112 §5.2: a proxy refuses obs-fold (or unfolds it); kubegate refuses it, raw, before any stage acts."""
    token = isolated.gw.token("ada", ["kubegate:cluster-admins"])
    lines = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Note": "a"}
    folded = "\r\n".join(f"{name}: {value}" + (f"\r\n{fold}continued" if name == header else "")
                         for name, value in lines.items())
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"folded"}}'
    request = (f"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{folded}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    answer = _raw(isolated, request)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"obs-fold" in answer, answer[:300]
    assert isolated.upstream.requests == []
    assert isolated.send("GET", PODS, token=token).status == 200  # the gateway serves on
