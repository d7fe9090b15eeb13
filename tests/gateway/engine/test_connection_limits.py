"""Connections that hold the gateway without using it are closed: a half-sent TLS handshake or
request head (slowloris), more such connections from one address than its cap, a kept-alive
connection gone idle. Another user's request completes meanwhile. Driven with raw sockets; the
attacker's connections come from 127.0.0.2, the user's from 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Iterator

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


def test_an_idle_kept_alive_connection_is_closed(gw: GatewayHandle) -> None:
    ctx = ssl.create_default_context(cafile=str(gw.ca_file))
    with ctx.wrap_socket(_from("127.0.0.1", gw.port), server_hostname="127.0.0.1") as tls:
        tls.sendall(f"GET /version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gw.token('ada')}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += tls.recv(65536)
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
