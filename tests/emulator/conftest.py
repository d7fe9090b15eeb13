"""Raw HTTPS access to the emulator, for tests of wire-level behaviour."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from kubegate.emulator import harness


@dataclass
class Raw:
    emu: harness.RunningEmulator
    token: str

    def _conn(self, timeout: float = 10) -> http.client.HTTPSConnection:
        ctx = ssl.create_default_context(cafile=str(self.emu.ca_file))
        return http.client.HTTPSConnection("127.0.0.1", self.emu.port, context=ctx, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                content_type: str = "application/json", token: str | None = None) -> tuple[int, Any]:
        conn = self._conn()
        hdrs = {"Authorization": f"Bearer {token if token is not None else self.token}", **(headers or {})}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = content_type
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode()

    def watch(self, path: str, timeout: float = 10) -> Iterator[dict[str, Any]]:
        """Events of a watch, one at a time, until the server ends the stream."""
        conn = self._conn(timeout)
        conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        try:
            while line := resp.readline():
                yield json.loads(line)
        finally:
            conn.close()


@pytest.fixture
def raw(fresh_upstream: harness.RunningEmulator) -> Raw:
    return Raw(fresh_upstream, fresh_upstream.admin_token)


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": data}
