"""Connections that hold the gateway without using it are closed: a half-sent TLS handshake or
request head (slowloris), a request body trickled slower than the minimum rate, more such
connections from one address than its cap, a kept-alive connection gone idle; a large upload at a
usable speed takes as long as it needs. Another user's request completes meanwhile. Driven with raw sockets; the
attacker's connections come from 127.0.0.2, the user's from 127.0.0.1."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from typing import Any, Iterator

import pytest
import requests

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, start_gateway


@pytest.fixture(scope="module")
def gw(upstream: harness.RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    handle = start_gateway(tmp_path_factory.mktemp("limits"), upstream,
                           listen={"port": 0, "request_seconds": 2, "idle_seconds": 2,
                                   "max_unauthenticated_per_source": 10})
    yield handle
    handle.stop()


def _from(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _closed_by_the_gateway(sock: socket.socket, bound: float = 20) -> bool:
    """Whether the gateway closes SOCK within BOUND seconds (a bound for the test, not a measurement)."""
    sock.settimeout(bound)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, ssl.SSLError, OSError) as e:
        return not isinstance(e, socket.timeout)


def test_slow_and_surplus_connections_are_closed_and_users_are_served(gw: GatewayHandle) -> None:
    slow = [_from("127.0.0.2", gw.port) for _ in range(15)]  # five past the cap of ten
    for n, sock in enumerate(slow):
        if n % 2:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a TLS ClientHello, cut short
    user = requests.get(f"{gw.url}/api/v1/namespaces/default/configmaps", verify=str(gw.ca_file), timeout=20,
                        headers={"Authorization": f"Bearer {gw.token('ada')}"})
    assert user.status_code == 200  # served while the slow ones hang on
    assert all(_closed_by_the_gateway(sock) for sock in slow)
    for sock in slow:
        sock.close()


def test_a_half_sent_request_head_is_closed(gw: GatewayHandle) -> None:
    ctx = ssl.create_default_context(cafile=str(gw.ca_file))
    with ctx.wrap_socket(_from("127.0.0.2", gw.port), server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
        assert _closed_by_the_gateway(tls)


def _upload(tls: ssl.SSLSocket, token: str, name: str, body_pieces: int, piece: int, pause: float) -> None:
    """POST a ConfigMap whose body goes out BODY_PIECES pieces of PIECE bytes, PAUSE seconds apart."""
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                       "data": {"blob": "x" * (body_pieces * piece - 200)}}).encode()
    body += b" " * (body_pieces * piece - len(body))  # JSON allows trailing blanks: exactly the pieces' size
    tls.sendall(f"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
                f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    for n in range(body_pieces):
        tls.sendall(body[n * piece:(n + 1) * piece])
        time.sleep(pause)


def test_a_body_trickled_slower_than_the_minimum_rate_is_cut(gw: GatewayHandle) -> None:
    ctx = ssl.create_default_context(cafile=str(gw.ca_file))
    with ctx.wrap_socket(_from("127.0.0.2", gw.port), server_hostname="127.0.0.1") as tls:
        sender = threading.Thread(target=_closing_quietly, args=(_upload, tls, gw.token("ada"), "trickled", 40, 20, 0.25))
        sender.start()  # 80 bytes a second against a minimum of 1024: cut after about 2 s
        assert _closed_by_the_gateway(tls)
        sender.join(20)
    names = [e["objectRef"].get("name") for e in gw.audit_events() if e["verb"] == "create"]
    assert "trickled" not in names  # no request came of it: nothing judged, nothing forwarded
    kept = requests.get(f"{gw.url}/api/v1/namespaces/default/configmaps/trickled", verify=str(gw.ca_file),
                        timeout=20, headers={"Authorization": f"Bearer {gw.token('ada')}"})
    assert kept.status_code == 404


def test_an_upload_at_a_usable_speed_outlasts_the_request_deadline(gw: GatewayHandle) -> None:
    """24 KiB at 6 KiB/s: four seconds of body, twice request_seconds, above the minimum rate: served."""
    ctx = ssl.create_default_context(cafile=str(gw.ca_file))
    with ctx.wrap_socket(_from("127.0.0.1", gw.port), server_hostname="127.0.0.1") as tls:
        started = time.monotonic()
        _upload(tls, gw.token("ada"), "uploaded-slowly", 24, 1024, 1 / 6)
        tls.settimeout(20)
        answer = _head(tls)
        assert time.monotonic() - started > 2 * 2 - 0.5  # the body took longer than request_seconds
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]


def _head(tls: ssl.SSLSocket) -> bytes:
    """What the gateway answers up to the end of its head (less, if it closes first)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        more = tls.recv(65536)
        if not more:
            break
        answer += more
    return answer


def _closing_quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except OSError:  # the gateway closed the connection under it: what the test wants
        pass


def test_an_idle_kept_alive_connection_is_closed(gw: GatewayHandle) -> None:
    ctx = ssl.create_default_context(cafile=str(gw.ca_file))
    with ctx.wrap_socket(_from("127.0.0.1", gw.port), server_hostname="127.0.0.1") as tls:
        tls.sendall(f"GET /version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gw.token('ada')}\r\n\r\n".encode())
        tls.settimeout(20)
        answer = _head(tls)
        assert answer.startswith(b"HTTP/1.1 200")
        assert _closed_by_the_gateway(tls)  # then nothing more is asked: idle past idle_seconds


def test_a_watch_is_not_idle(gw: GatewayHandle) -> None:
    """A stream with nothing to say for longer than every limit is in use, not idle: it goes on."""
    watch = requests.get(f"{gw.url}/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=6",
                         headers={"Authorization": f"Bearer {gw.token('ada')}"}, verify=str(gw.ca_file),
                         stream=True, timeout=(10, 30))
    assert watch.status_code == 200
    started = time.monotonic()
    for _ in watch.iter_content(chunk_size=None):
        pass
    assert time.monotonic() - started >= 5  # it ran until the apiserver's own timeoutSeconds, not cut at 2 s
