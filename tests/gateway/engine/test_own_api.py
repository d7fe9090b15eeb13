"""One routing rule for kubegate's own API: every path under /kubegate/, with a trailing slash or
not, is answered by kubegate and never reaches a cluster."""

from __future__ import annotations

import uuid

import pytest

from tests.gateway.conftest import Isolated

CALLS = [("GET", "/kubegate/v1/freeze"), ("GET", "/kubegate/v1/approvals"), ("GET", "/kubegate/v1/approvals/x"),
         ("POST", "/kubegate/v1/approvals/x/approve"), ("GET", "/kubegate/v1/breakers"),
         ("POST", "/kubegate/v1/breakers/reset"), ("GET", "/kubegate/v1/accessrequests"),
         ("POST", "/kubegate/v1/accessrequests"), ("DELETE", "/kubegate/v1/sessions/x"),
         ("GET", "/kubegate/v1/nope"), ("GET", "/kubegate/v2/approvals"), ("GET", "/kubegate"),
         ("GET", "/kubegate/v1")]


@pytest.mark.parametrize("slashes", ["", "/", "//"])
@pytest.mark.parametrize(("method", "path"), CALLS)
def test_every_kubegate_path_is_answered_here(isolated: Isolated, method: str, path: str, slashes: str) -> None:
    token = isolated.gw.token(f"ada-{uuid.uuid4().hex[:8]}")  # a user of its own: the API's per-user QPS
    bare = isolated.send(method, path, token=token, body=b"{}" if method == "POST" else None)
    slashed = isolated.send(method, path + slashes, token=token, body=b"{}" if method == "POST" else None)
    assert isolated.upstream_paths() == []  # never forwarded
    assert slashed.status == bare.status, (slashed.body, bare.body)
    if bare.status >= 400:
        body = slashed.json()
        assert body["kind"] == "Status" and body["message"].startswith("kubegate:"), body
