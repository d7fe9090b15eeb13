"""A Secret's values reach no sink, whatever the request's shape: every patch type kubectl and the
clients send (JSON patch, merge, strategic merge with only the last-applied annotation, server-side
apply), creates and updates, kubectl's own second `apply` — through the audit log, its spool, the
audit center, approval tickets (their API, `kubegate approvals show`, and the state store behind
them). Searched for raw and base64-encoded."""

from __future__ import annotations

import base64
import json
import subprocess as sp
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
import requests
import yaml

from kubegate.emulator import harness
from tests.audit.test_webhook import AuditCenter, free_port, wait_for
from tests.conftest import GatewayHandle, kubectl_binary, settled_text, start_gateway
from tests.redis_server import RedisServer

HELD = "held"  # changes to Secrets here wait for approval: the ticket keeps the request
RULES = f"""
rules:
  - id: secrets-held
    description: Secrets in {HELD} change with a second person
    outcome: require-approval
    match: {{namespaces: [{HELD}], resources: [secrets]}}
"""
POLICY = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: RequestResponse\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def last_applied(name: str, value: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                       "data": {"password": b64(value)}, "type": "Opaque"})


# (case, method, path under the namespace, content type, body from (name, value))
Body = Callable[[str, str], Any]
SHAPES: list[tuple[str, str, str, str, Body]] = [
    ("create-stringdata", "POST", "secrets", "application/json",
     lambda n, v: {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}, "stringData": {"password": v}}),
    ("create-data", "POST", "secrets", "application/json",
     lambda n, v: {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}, "data": {"password": b64(v)}}),
    ("update", "PUT", "secrets/{name}", "application/json",
     lambda n, v: {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}, "data": {"password": b64(v)}}),
    ("json-patch", "PATCH", "secrets/{name}", "application/json-patch+json",
     lambda n, v: [{"op": "add", "path": "/data/password", "value": b64(v)}]),
    ("json-patch-annotation", "PATCH", "secrets/{name}", "application/json-patch+json",
     lambda n, v: [{"op": "add", "path": "/metadata/annotations",
                    "value": {"kubectl.kubernetes.io/last-applied-configuration": last_applied(n, v)}}]),
    ("merge-patch", "PATCH", "secrets/{name}", "application/merge-patch+json",
     lambda n, v: {"stringData": {"password": v}}),
    ("strategic-last-applied-only", "PATCH", "secrets/{name}", "application/strategic-merge-patch+json",
     lambda n, v: {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied(n, v)},
                                "labels": {"tier": "db"}}}),
    ("apply-yaml", "PATCH", "secrets/{name}?fieldManager=tests", "application/apply-patch+yaml",
     lambda n, v: yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n},
                                  "stringData": {"password": v}})),
]


@pytest.fixture
def center(tmp_path: Path) -> Iterator[AuditCenter]:
    c = AuditCenter(tmp_path, free_port())
    c.start()
    yield c
    c.stop()


@pytest.fixture
def gw(tmp_path: Path, upstream: harness.RunningEmulator, center: AuditCenter,
       redis_server: RedisServer) -> Iterator[GatewayHandle]:
    (tmp_path / "audit-policy.yaml").write_text(POLICY)
    handle = start_gateway(tmp_path / "gw", upstream, gate_files={"rules.yaml": RULES},
                           store={"redis_url": redis_server.url, "key_prefix": "redaction:"},
                           audit={"policy_file": str(tmp_path / "audit-policy.yaml"), "webhook": {
                               "url": f"https://127.0.0.1:{center.port}/audit", "ca_file": str(center.ca_file),
                               "batch_seconds": 0.2}})
    yield handle
    handle.stop()


def _send(gw: GatewayHandle, method: str, url: str, content_type: str, body: Any) -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.request(method, f"{gw.url}{url}", data=data.encode(), timeout=30, verify=str(gw.ca_file),
                            headers={"Authorization": f"Bearer {gw.token('ada')}", "Content-Type": content_type})


def test_no_secret_value_reaches_any_sink(gw: GatewayHandle, center: AuditCenter, redis_server: RedisServer,
                                         tmp_path: Path) -> None:
    emu = gw.upstream
    namespaces = emu.emulator.registry.lookup("", "v1", "namespaces")
    for ns in ("open", HELD):
        emu.call(lambda ns=ns: emu.emulator.store.create(namespaces, "", {"metadata": {"name": ns}}))
    values: list[str] = []
    tickets: list[str] = []
    for ns in ("open", HELD):
        for case, method, path, content_type, body in SHAPES:
            name = f"s-{case}"
            value = f"s3cr3t-{ns}-{case}-{uuid.uuid4().hex}"
            values.append(value)
            if method != "POST":  # the object the change applies to
                base = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"other": b64("x")}}
                assert _send(gw, "POST", f"/api/v1/namespaces/{ns}/secrets", "application/json", base).status_code \
                    in (201, 403)
            url = f"/api/v1/namespaces/{ns}/" + path.format(name=name)
            answer = _send(gw, method, url, content_type, body(name, value))
            if ns == HELD:
                assert answer.status_code == 403 and "Approval ticket" in answer.text, (case, answer.text)
                tickets.append(answer.text.split("Approval ticket ", 1)[1].split()[0])
            else:
                assert answer.status_code in (200, 201), (case, answer.status_code, answer.text)

    # kubectl apply, twice: the second sends a strategic merge patch carrying last-applied.
    manifest = tmp_path / "secret.yaml"
    kubeconfig = gw.kubeconfig(tmp_path / "ada.kubeconfig", "ada")
    for n in range(2):
        value = f"s3cr3t-kubectl-apply-{n}-{uuid.uuid4().hex}"
        values.append(value)
        manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                                            "metadata": {"name": "applied", "namespace": "open",
                                                         "labels": {"round": str(n)}},
                                            "stringData": {"password": value}}))
        done = sp.run([kubectl_binary(), "--kubeconfig", str(kubeconfig), "apply", "-f", str(manifest)],
                      capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    # Every sink, and what approvers see.
    log = settled_text(gw.settings.audit_path)
    assert "s-strategic-last-applied-only" in log and "applied" in log  # the requests are recorded...
    spool = "".join(p.read_text(errors="replace") for p in (gw.settings.state / "audit-spool").rglob("*") if p.is_file())
    wait_for(lambda: any((e.get("objectRef") or {}).get("name") == "applied" and e.get("verb") == "patch"
                         for e in center.events))
    at_center = json.dumps(center.events)
    sam = gw.kubeconfig(tmp_path / "sam.kubeconfig", "sam", ("kubegate:sre",))
    shows = ""
    for ticket in tickets:
        shown = sp.run([sys.executable, "-m", "kubegate", "approvals", "show", ticket, "--kubeconfig", str(sam)],
                       capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and ticket in shown.stdout, shown.stderr
        shows += shown.stdout
    listed = requests.get(f"{gw.url}/kubegate/v1/approvals", verify=str(gw.ca_file), timeout=30,
                          headers={"Authorization": f"Bearer {gw.token('sam', ('kubegate:sre',))}"}).text
    assert all(t in listed for t in tickets)
    client = redis.Redis.from_url(redis_server.url)
    stored = ""
    for key in client.scan_iter("redaction:*"):
        kind = client.type(key).decode()
        raw: Any = client.get(key) if kind == "string" else client.hgetall(key) if kind == "hash" else b""
        stored += repr(raw)
    assert tickets[0] in stored  # the tickets are in the store...
    sinks = {"audit log": log, "spool": spool, "audit center": at_center, "approvals show": shows,
             "approvals API": listed, "state store": stored}
    for value in values:  # ...and no value is, anywhere, in either spelling
        for where, text in sinks.items():
            assert value not in text and b64(value) not in text, (where, value)
    assert "<redacted by kubegate>" in shows  # what approvers see: the structure, the values redacted
