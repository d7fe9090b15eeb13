"""A gateway of the test's own in front of an emulator of its own, and raw HTTPS access to it."""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, start_gateway


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(url_port: int, ca_file: Path, method: str, path: str, *, headers: dict[str, str] | None = None,
         body: bytes | None = None, timeout: float = 15) -> Response:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", url_port, context=ctx, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        try:
            conn.endheaders(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-upload (413): the answer is already on its way, read it as curl would
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class Isolated:
    """A gateway and emulator of the module's own; each test starts with an empty request log
    and sees only the audit events written since it started."""

    gw: GatewayHandle
    upstream: harness.RunningEmulator
    audit_offset: int = 0

    def reset(self) -> None:
        self.upstream.clear_requests()
        self.audit_offset = len(self.gw.audit_events())

    def audit_events(self) -> list[dict[str, Any]]:
        return self.gw.audit_events()[self.audit_offset:]

    def send(self, method: str, path: str, *, token: str | None = None, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> Response:
        hdrs = {"User-Agent": f"kubegate-tests/{uuid.uuid4().hex[:6]}", **(headers or {})}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        return send(self.gw.port, self.gw.ca_file, method, path, headers=hdrs, body=body)

    def upstream_paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.upstream.requests]


@pytest.fixture(scope="module")
def isolated_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Isolated]:
    state = tmp_path_factory.mktemp("isolated")
    upstream = harness.start(state / "emulator")
    gw = start_gateway(state / "gateway", upstream)
    yield Isolated(gw, upstream)
    gw.stop()
    upstream.stop()


@pytest.fixture
def isolated(isolated_pair: Isolated) -> Isolated:
    isolated_pair.reset()
    return isolated_pair


def assert_status(resp: Response, code: int, reason: str) -> dict[str, Any]:
    assert resp.status == code, resp.body
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert (body["kind"], body["code"], body["reason"]) == ("Status", code, reason)
    return body
