"""Approval tickets: a risky request waits for a second person, then passes once.

A request that a freeze window, a rule or a webhook marks "requires approval" is refused with a
ticket. The ticket is bound to the requester, the ticket's kind and the canonical request: cluster,
method, path, the query as kube-apiserver reads it (re-encoded), content type and body digest — so a
ticket approved for `exec -- cat /etc/config` does not admit `exec -- sh -c "rm -rf /data"`, one for
`labelSelector=tier=canary` does not admit `labelSelector=tier`, and a `change` ticket never meets a
freeze window's need for break-glass. The ticket shows the approver what is to be approved: the
request line with its query, a readable body, and for a patch the fields it changes. Another person whom the policy allows to `approve`
`approvals.kubegate.io` (NAME: the ticket's kind, `change` or `break-glass`) in that scope
approves or denies it; the requester's identical retry then passes exactly once within the
ticket's lifetime (compare-and-swap approved -> used in the state store, so once across
replicas too). Any other request, by anyone, does not match the ticket.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Awaitable, Callable, Literal

from ..authz.authorizer import PolicyHolder
from ..identity.identity import Identity
from ..request.info import RequestInfo
from kubegate.audit import redact

from ..state.store import StateStore, room_for

KIND = "approvals"
INDEX = "approvals-by-request"  # fingerprint -> ids of the tickets for that request
TICKET_TTL_SECONDS = 3600.0
PREVIEW_BYTES = 16 * 1024  # how much of a body a ticket shows
RETENTION_SECONDS = 7 * 24 * 3600  # tickets are kept this long after they lapse, then purged
Status = Literal["pending", "approved", "denied", "used", "expired", "withdrawn"]


class ApprovalError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Ticket:
    id: str
    kind: str  # "change" or "break-glass" (a freeze window)
    user: str
    cluster: str
    verb: str
    resource: str  # resource[.group][/subresource]
    namespace: str
    name: str
    body_digest: str
    fingerprint: str
    reasons: list[str]
    created: float
    expires_at: float
    status: Status = "pending"
    decided_by: str = ""
    # The request as it will be executed, for the approver to read.
    method: str = ""
    path: str = ""
    query: str = ""  # canonical (as forwarded)
    content_type: str = ""
    body_preview: str = ""  # the body, readable (decoded protobuf as JSON), cut at PREVIEW_BYTES
    changes: list[dict[str, Any]] = field(default_factory=list)  # for a patch: the fields it changes
    session: str = ""  # the requester's session (a webshell terminal waits for the tickets its commands open)
    # What the change takes with it (consequences.radius.BlastRadius.to_json: counts and names).
    blast_radius: dict[str, Any] | None = None

    def live(self, now: float) -> bool:
        return now < self.expires_at


@dataclass(frozen=True)
class Request:
    """The canonical request a ticket is bound to and shows."""

    method: str
    path: str
    query: str  # canonical: as kube-apiserver reads it, re-encoded
    content_type: str
    body: bytes
    body_preview: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    blast_radius: dict[str, Any] | None = None


def fingerprint(user: str, cluster: str, kind: str, info: RequestInfo, request: Request) -> tuple[str, str]:
    """(fingerprint, body digest) of a request: what must be identical for a ticket to apply."""
    digest = hashlib.sha256(request.body).hexdigest()
    media = request.content_type.split(";")[0].strip().lower()
    key = json.dumps([user, cluster, kind, request.method.upper(), request.path, request.query, media,
                      info.verb, info.object_ref, info.namespace, info.name, digest])
    return hashlib.sha256(key.encode()).hexdigest(), digest


def _dump(t: Ticket) -> str:
    return json.dumps(asdict(t), sort_keys=True)


def _load(text: str) -> Ticket:
    return Ticket(**json.loads(text))


AuditHook = Callable[[str, Ticket, str], None]


class ApprovalService:
    def __init__(self, store: StateStore, policy: PolicyHolder, *, clock: Callable[[], float] = time.time,
                 audit: AuditHook | None = None) -> None:
        self.store, self.policy, self.clock = store, policy, clock
        self.audit = audit or (lambda event, ticket, actor: None)

    async def all(self) -> list[Ticket]:
        return sorted((_load(v) for v in (await self.store.items(KIND)).values()), key=lambda t: t.created)

    async def get(self, ticket_id: str) -> Ticket | None:
        raw = await self.store.get(KIND, ticket_id)
        return None if raw is None else _load(raw)

    async def find_or_open(self, identity: Identity, cluster: str, info: RequestInfo, request: Request, kind: str,
                           reasons: list[str]) -> tuple[Callable[[], Awaitable[Ticket]] | None, Ticket]:
        """(use, ticket): an approved ticket of this kind for exactly this request and the call that
        uses it up (once: a second use, on any replica, raises 409); or (None, the pending ticket for
        it, an existing one or a new one). Tickets are found through their fingerprint's index."""
        fp, digest = fingerprint(identity.user, cluster, kind, info, request)
        now = self.clock()
        pending: Ticket | None = None
        index_raw = await self.store.get(INDEX, fp)
        ids: list[str] = json.loads(index_raw) if index_raw else []
        current = []
        for ticket_id in ids:
            raw = await self.store.get(KIND, ticket_id)
            if raw is None:
                continue
            ticket = _load(raw)
            if ticket.fingerprint != fp or not ticket.live(now) or ticket.status not in ("pending", "approved"):
                continue
            current.append(ticket_id)
            if ticket.status == "approved":
                return self._user(raw, ticket, identity), ticket
            if ticket.status == "pending":
                pending = ticket
        if pending is not None:
            return None, pending
        await room_for(self.store, KIND, "approval tickets")
        ticket = Ticket(secrets.token_hex(5), kind, identity.user, cluster, info.verb, info.object_ref, info.namespace,
                        info.name, digest, fp, reasons, now, now + TICKET_TTL_SECONDS,
                        method=request.method.upper(), path=request.path, query=request.query,
                        content_type=request.content_type, body_preview=request.body_preview,
                        changes=request.changes, session=identity.session, blast_radius=request.blast_radius)
        await self.store.put(KIND, ticket.id, _dump(ticket))
        await self.store.put(INDEX, fp, json.dumps([*current, ticket.id]))
        self.audit("requested", ticket, identity.user)
        return None, ticket

    async def withdraw(self, ticket_id: str, requester: Identity) -> Ticket:
        """The requester gives a pending ticket up (a webshell command abandoned with Ctrl-C): nobody
        is asked any more, and its identical retry opens a new one."""
        raw = await self.store.get(KIND, ticket_id)
        ticket = _load(raw) if raw is not None else None
        if ticket is None or ticket.user != requester.user:
            raise ApprovalError(404, f"no approval ticket {ticket_id!r} of yours")
        if ticket.status != "pending":
            raise ApprovalError(409, f"ticket {ticket_id} is already {ticket.status}")
        withdrawn = settled(replace(ticket, status="withdrawn", decided_by=requester.user))
        if not await self.store.swap(KIND, ticket_id, raw, _dump(withdrawn)):
            raise ApprovalError(409, f"ticket {ticket_id} was decided meanwhile")
        self.audit("withdrawn", withdrawn, requester.user)
        return withdrawn

    async def purge(self) -> int:
        """Lapse pending tickets past their lifetime (status expired, the body no longer kept);
        forget tickets past their lifetime plus RETENTION_SECONDS (the audit log keeps their story)."""
        now, gone = self.clock(), 0
        for ticket_id, raw in (await self.store.items(KIND)).items():
            ticket = _load(raw)
            if ticket.status == "pending" and not ticket.live(now):
                lapsed = settled(replace(ticket, status="expired"))
                if await self.store.swap(KIND, ticket_id, raw, _dump(lapsed)):
                    self.audit("expired", lapsed, "kubegate")
                    raw, ticket = _dump(lapsed), lapsed
            if now >= ticket.expires_at + RETENTION_SECONDS and await self.store.swap(KIND, ticket_id, raw, None):
                gone += 1
                index = await self.store.get(INDEX, ticket.fingerprint)
                if index is not None:
                    left = [i for i in json.loads(index) if i != ticket_id]
                    await self.store.swap(INDEX, ticket.fingerprint, index, json.dumps(left) if left else None)
        return gone

    def _user(self, raw: str, ticket: Ticket, identity: Identity) -> Callable[[], Awaitable[Ticket]]:
        async def use() -> Ticket:
            used = replace(ticket, status="used")
            if not await self.store.swap(KIND, ticket.id, raw, _dump(used)):
                raise ApprovalError(409, f"approval ticket {ticket.id} was used meanwhile; it allows one request")
            self.audit("used", used, identity.user)
            return used
        return use

    def may_approve(self, identity: Identity, ticket: Ticket) -> tuple[bool, str]:
        decision = self.policy.decide_own(identity, ticket.cluster, "approve", "approvals",
                                          namespace=ticket.namespace, name=ticket.kind)
        return decision.allowed, decision.reason

    def may_see(self, identity: Identity, ticket: Ticket) -> bool:
        return identity.user == ticket.user or self.may_approve(identity, ticket)[0]

    async def decide(self, ticket_id: str, approver: Identity, approve: bool) -> Ticket:
        raw = await self.store.get(KIND, ticket_id)
        if raw is None:
            raise ApprovalError(404, f"no approval ticket {ticket_id!r}")
        ticket = _load(raw)
        if approver.user == ticket.user:
            raise ApprovalError(403, "nobody may approve their own request")
        allowed, why = self.may_approve(approver, ticket)
        if not allowed:
            raise ApprovalError(403, f'user "{approver.user}" may not approve {ticket.kind} tickets in cluster '
                                     f'"{ticket.cluster}" ({why})')
        if ticket.status != "pending":
            raise ApprovalError(409, f"ticket {ticket_id} is already {ticket.status}")
        if not ticket.live(self.clock()):
            raise ApprovalError(409, f"ticket {ticket_id} has expired; the requester's retry opens a new one")
        decided = settled(replace(ticket, status="approved" if approve else "denied", decided_by=approver.user))
        if not await self.store.swap(KIND, ticket_id, raw, _dump(decided)):
            raise ApprovalError(409, f"ticket {ticket_id} was decided by someone else meanwhile")
        self.audit(decided.status, decided, approver.user)
        return decided


def redacted_changes(changes: list[dict[str, Any]], resource: str, subresource: str = "") -> list[dict[str, Any]]:
    """What a patch changes, as an approver may read it: the values redacted as the body is (a
    Secret's: only the paths)."""
    if redact.secret_bearing(resource, subresource):
        return [{"path": c["path"], "old": redact.REDACTED, "new": redact.REDACTED} for c in changes]
    return [{"path": c["path"], "old": redact.redact(c.get("old")), "new": redact.redact(c.get("new"))}
            for c in changes]


def settled(ticket: Ticket) -> Ticket:
    """What the store keeps of a ticket once decided, withdrawn or lapsed: the request line and the
    paths it changes; the body is no longer needed by anyone (its SHA-256 still binds the ticket)."""
    if not ticket.body_preview and all(set(c) == {"path"} for c in ticket.changes):
        return ticket
    return replace(ticket, body_preview=f"(not kept once the ticket is {ticket.status}; sha256 {ticket.body_digest} "
                                        "bound it)" if ticket.body_preview else "",
                   changes=[{"path": c["path"]} for c in ticket.changes])


def ticket_json(t: Ticket) -> dict[str, object]:
    return {"kind": "ApprovalTicket", "id": t.id, "type": t.kind, "user": t.user, "cluster": t.cluster,
            "verb": t.verb, "resource": t.resource, "namespace": t.namespace, "name": t.name,
            "bodyDigest": t.body_digest, "reasons": t.reasons, "status": t.status, "decidedBy": t.decided_by,
            "created": t.created, "expiresAt": t.expires_at, "session": t.session,
            "request": {"method": t.method, "path": t.path, "query": t.query, "contentType": t.content_type,
                        "body": t.body_preview, "changes": t.changes},
            "blastRadius": t.blast_radius}


def preview(body: bytes, decoded: Any, resource: str = "", subresource: str = "") -> str:
    """A body as an approver reads it: its decoded form, redacted as the audit log redacts it (a
    Secret's values never: by resource, whatever the body's shape), as indented JSON; else its
    text; cut."""
    if decoded is not None:
        text = json.dumps(redact.redact(decoded, resource=resource, subresource=subresource), indent=2,
                          sort_keys=True, default=str)
    elif not body:
        return ""
    elif redact.secret_bearing(resource, subresource):
        return f"(a body that cannot be read, on {resource}: not shown; sha256 {hashlib.sha256(body).hexdigest()} binds it)"
    else:
        text = body.decode("utf-8", errors="replace")
    if len(text) > PREVIEW_BYTES:
        return text[:PREVIEW_BYTES] + f"\n… ({len(text) - PREVIEW_BYTES} more characters not shown; sha256 binds all)"
    return text
