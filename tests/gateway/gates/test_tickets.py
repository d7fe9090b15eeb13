"""What an approval ticket keeps: the request redacted as the audit log redacts it, and once it is
decided, withdrawn or lapsed, only the request line and the paths it changes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from kubegate.audit.redact import REDACTED
from kubegate.gateway.authz.authorizer import PolicyHolder
from kubegate.gateway.gates import approvals
from kubegate.gateway.identity.identity import Identity
from kubegate.gateway.request.info import RequestInfo
from kubegate.gateway.state.store import MemoryStore

POLICIES = Path(__file__).resolve().parents[3] / "policies" / "authz"
ADA = Identity("ada", ("kubegate:cluster-admins",))
SAM = Identity("sam", ("kubegate:sre",))


def _open(service: approvals.ApprovalService, resource: str, body: dict[str, object],
          changes: list[dict[str, object]]) -> approvals.Ticket:
    info = RequestInfo(path=f"/api/v1/namespaces/shop/{resource}/x", verb="patch", is_resource=True,
                       api_version="v1", namespace="shop", resource=resource, name="x")
    raw = json.dumps(body).encode()
    request = approvals.Request("PATCH", info.path, "", "application/merge-patch+json", raw,
                                approvals.preview(raw, body, resource),
                                approvals.redacted_changes(changes, resource))
    _, ticket = asyncio.run(service.find_or_open(ADA, "hz-1", info, request, "change", ["a rule"]))
    return ticket


def test_a_secrets_ticket_shows_its_structure_and_never_its_values() -> None:
    service = approvals.ApprovalService(MemoryStore(), PolicyHolder(POLICIES))
    body = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"data":{"p":"czNjcjN0"}}'}},
            "stringData": {"password": "s3cr3t"}}
    ticket = _open(service, "secrets", body, [{"path": "/data/password", "old": "b2xk", "new": "czNjcjN0"}])
    shown = json.dumps(approvals.ticket_json(ticket))
    assert "s3cr3t" not in shown and "czNjcjN0" not in shown and "b2xk" not in shown
    assert '"password"' in ticket.body_preview and REDACTED in ticket.body_preview
    assert ticket.changes == [{"path": "/data/password", "old": REDACTED, "new": REDACTED}]
    # Another resource: the approver reads what changes (3 -> 0), a token-named field still redacted.
    other = _open(service, "deployments", {"spec": {"replicas": 0}, "token": "abc"},
                  [{"path": "/spec/replicas", "old": 3, "new": 0}])
    assert other.changes == [{"path": "/spec/replicas", "old": 3, "new": 0}]
    assert '"replicas": 0' in other.body_preview and "abc" not in other.body_preview


def test_a_decided_or_lapsed_ticket_keeps_no_body() -> None:
    now = [1_000_000.0]
    service = approvals.ApprovalService(MemoryStore(), PolicyHolder(POLICIES), clock=lambda: now[0])
    decided = _open(service, "configmaps", {"data": {"k": "v"}}, [{"path": "/data/k", "old": "u", "new": "v"}])
    lapsed = _open(service, "configmaps", {"data": {"k": "w"}}, [{"path": "/data/k", "old": "u", "new": "w"}])
    assert '"k": "v"' in decided.body_preview
    asyncio.run(service.decide(decided.id, SAM, True))
    now[0] += approvals.TICKET_TTL_SECONDS + 1
    asyncio.run(service.purge())
    for ticket_id, status in ((decided.id, "approved"), (lapsed.id, "expired")):
        kept = asyncio.run(service.get(ticket_id))
        assert kept is not None and kept.status == status
        assert kept.changes == [{"path": "/data/k"}]
        assert '"k"' not in kept.body_preview and kept.body_digest in kept.body_preview
