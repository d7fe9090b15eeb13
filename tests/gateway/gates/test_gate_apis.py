"""kubegate's own APIs (breakers, approvals, freeze) under hostile and malformed input: a clear
Kubernetes Status every time, nothing forwarded to the cluster."""

from __future__ import annotations

import json

import pytest

from tests.conftest import GatewayHandle
from tests.gateway.conftest import send


@pytest.mark.parametrize(("method", "path", "body", "code", "message"), [
    ("POST", "/kubegate/v1/breakers/reset", b"{not json", 400, 'a reset needs {"breaker": "<key>"}'),
    ("POST", "/kubegate/v1/breakers/reset", b'{"breaker": 5}', 400, "breaker must be a non-empty string"),
    ("POST", "/kubegate/v1/breakers/reset", b'{"breaker": "pod-deletes/cluster=emu"}', 404,
     "breaker pod-deletes/cluster=emu is not open"),
    ("DELETE", "/kubegate/v1/breakers", None, 404, "no such breaker API call"),
    ("GET", "/kubegate/v1/approvals/nope", None, 404, "no approval ticket 'nope'"),
    ("POST", "/kubegate/v1/approvals/nope/approve", None, 404, "no approval ticket 'nope'"),
    ("POST", "/kubegate/v1/approvals/%2e%2e/approve", None, 404, "no approval ticket '%2e%2e'"),
    ("PUT", "/kubegate/v1/approvals", b"{}", 404, "no such approvals API call"),
])
def test_malformed_api_calls_get_a_status(gateway: GatewayHandle, method: str, path: str, body: bytes | None,
                                          code: int, message: str) -> None:
    gateway.upstream.clear_requests()
    resp = send(gateway.port, gateway.ca_file, method, path, body=body,
                headers={"Authorization": f"Bearer {gateway.token('ada')}", "Content-Type": "application/json"})
    status = json.loads(resp.body)
    assert resp.status == code and status["kind"] == "Status" and status["code"] == code
    assert message in status["message"]
    assert gateway.upstream.requests == []


@pytest.mark.parametrize("path", ["/kubegate/v1/breakers", "/kubegate/v1/approvals", "/kubegate/v1/freeze"])
def test_the_apis_need_a_token_and_refuse_impersonation(gateway: GatewayHandle, path: str) -> None:
    assert send(gateway.port, gateway.ca_file, "GET", path).status == 401
    smuggled = send(gateway.port, gateway.ca_file, "GET", path,
                    headers={"Authorization": f"Bearer {gateway.token('joe', ())}", "Impersonate-User": "ada"})
    assert smuggled.status == 403 and "impersonation headers" in json.loads(smuggled.body)["message"]


def test_resetting_needs_the_policy_to_allow_it(gateway: GatewayHandle) -> None:
    resp = send(gateway.port, gateway.ca_file, "POST", "/kubegate/v1/breakers/reset",
                body=b'{"breaker": "pod-deletes/cluster=emu"}',
                headers={"Authorization": f"Bearer {gateway.token('vic', ('kubegate:viewers',))}"})
    assert resp.status == 403
    assert 'user "vic" may not reset breaker pod-deletes/cluster=emu' in json.loads(resp.body)["message"]
