"""Time-bound access: a user asks for a role in a scope for a while, another person approves.

An approved request becomes a binding of the role to the user, valid until it expires; the
authorizer sees it like any binding in the policy files. The approver is never the requester,
and must be allowed `approve` on `accessrequests.kubegate.io` named after the role, in the
requested scope, by the policy in force (access.csv in the starter set).

Requests live in the state store (gateway/state/store.py): in memory for one replica, in Redis for
several, where a grant approved through any replica is effective on every one at its next
request. Decisions on a request are compare-and-swap on its record, so two approvers racing on
two replicas cannot both decide, and an expiry is audited once.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterable, Literal

from .authorizer import Authorizer, Decision, PolicyHolder
from ..identity.identity import Identity
from .policy import Binding, Source
from ..state.store import StateStore, StoreUnavailable

log = logging.getLogger("kubegate.access")

Status = Literal["pending", "approved", "denied", "expired"]
MAX_DURATION_SECONDS = 24 * 3600
# State any signed-in user can create is bounded: per user, in total, in size and in time.
MAX_REASON_CHARS = 1024
MAX_OPEN_PER_USER = 5
MAX_RECORDS = 10_000
PENDING_TTL_SECONDS = 24 * 3600  # an undecided request lapses after a day
RETENTION_SECONDS = 7 * 24 * 3600  # decided and lapsed records are kept this long, then purged
_NAMESPACE = re.compile(r"^(\*|[a-z0-9*]([-a-z0-9*]{0,61}[a-z0-9*])?)$")


class AccessError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class AccessRequest:
    id: str
    user: str
    role: str  # without the role: prefix
    cluster: str
    namespace: str  # a namespace glob; "*" for all
    reason: str
    duration_seconds: int
    created: float
    status: Status = "pending"
    decided_by: str = ""
    expires_at: float = 0.0

    @property
    def scope(self) -> str:
        return f"{self.cluster}:{self.namespace}"

    def active(self, now: float) -> bool:
        return self.status == "approved" and now < self.expires_at


KIND = "accessrequests"  # the record kind in the state store: every request, any status
GRANTS = "accessgrants"  # approved, not yet expired: what authorization reads (its own version)
OPEN = "accessrequests-open"  # user -> ids of their requests waiting for a decision


def _dump(request: AccessRequest) -> str:
    return json.dumps(asdict(request), sort_keys=True)


def _load(text: str) -> AccessRequest:
    return AccessRequest(**json.loads(text))


AuditHook = Callable[[str, AccessRequest, str], None]  # (event, request, actor)


class AccessService:
    def __init__(self, store: StateStore, policy: PolicyHolder, *, clock: Callable[[], float] = time.time,
                 audit: AuditHook | None = None, clusters: Callable[[], Iterable[str]] | None = None) -> None:
        self.store, self.policy, self.clock, self.clusters = store, policy, clock, clusters
        self.audit = audit or (lambda event, request, actor: None)
        self._requests: dict[str, AccessRequest] = {}  # the approved grants (GRANTS), as of _version
        self._version: int | None = None
        self._next_expiry = float("inf")
        self._authorizer_seen: int | None = None
        self._outage_logged = False
        policy.set_extra_bindings(self.bindings)

    def _roles(self) -> set[str]:
        return {r.subject.removeprefix("role:") for r in self.policy.current.policy.rules if r.subject.startswith("role:")}

    async def all(self) -> list[AccessRequest]:
        return sorted((_load(v) for v in (await self.store.items(KIND)).values()), key=lambda r: r.created)

    async def get(self, request_id: str) -> AccessRequest | None:
        found = await self.store.get(KIND, request_id)
        return None if found is None else _load(found)

    async def request(self, identity: Identity, role: str, cluster: str, namespace: str, duration_seconds: int,
                      reason: str) -> AccessRequest:
        if role not in self._roles():
            raise AccessError(400, f"no role named {role!r} in the policy in force")
        if self.clusters is not None and cluster not in self.clusters():
            raise AccessError(400, f"no cluster named {cluster!r} behind this gateway")
        if not _NAMESPACE.match(namespace or "*"):
            raise AccessError(400, f"{namespace!r} is not a namespace name or glob")
        if not 0 < duration_seconds <= MAX_DURATION_SECONDS:
            raise AccessError(400, f"the duration must be between 1 second and {MAX_DURATION_SECONDS // 3600} hours")
        if not reason.strip():
            raise AccessError(400, "a reason is required: approvers decide on it and the audit keeps it")
        if len(reason) > MAX_REASON_CHARS:
            raise AccessError(413, f"the reason is longer than {MAX_REASON_CHARS} characters")
        if any(ord(c) < 0x20 and c not in "\n\t" for c in reason):
            raise AccessError(400, "the reason contains control characters")
        if await self.store.count(KIND) >= MAX_RECORDS:
            raise AccessError(429, "too many access requests are on record; try again later")
        request = AccessRequest(secrets.token_hex(6), identity.user, role, cluster, namespace or "*", reason.strip(),
                                duration_seconds, self.clock())
        if not await self._open_change(identity.user, add=request.id):
            raise AccessError(429, f"you have {MAX_OPEN_PER_USER} access requests waiting already; wait for a "
                                   "decision (or for them to lapse after a day) before asking again")
        await self.store.put(KIND, request.id, _dump(request))
        self.audit("requested", request, identity.user)
        return request

    async def _open_change(self, user: str, *, add: str = "", remove: str = "") -> bool:
        """Add or remove a request in the user's list of waiting ones (compare-and-swap, so replicas
        racing for the last place cannot both have it). False: adding would pass the cap."""
        for _ in range(8):
            raw = await self.store.get(OPEN, user)
            ids: list[str] = json.loads(raw) if raw else []
            new = [i for i in ids if i != remove] + ([add] if add else [])
            if add and len(new) > MAX_OPEN_PER_USER:
                return False
            if await self.store.swap(OPEN, user, raw, json.dumps(new) if new else None):
                return True
        raise StoreUnavailable("the list of waiting access requests changed too often to update")

    async def _pending(self, request_id: str) -> tuple[str, AccessRequest]:
        raw = await self.store.get(KIND, request_id)
        if raw is None:
            raise AccessError(404, f"no access request {request_id!r}")
        request = _load(raw)
        if request.status != "pending":
            raise AccessError(409, f"access request {request_id} is already {request.status}")
        return raw, request

    def may_see(self, identity: Identity, request: AccessRequest) -> bool:
        """One's own requests, and those one may decide on; reasons are not for everyone."""
        return identity.user == request.user or self._may_approve(identity, request).allowed

    def _may_approve(self, approver: Identity, request: AccessRequest) -> Decision:
        return self.policy.decide_own(approver, request.cluster, "approve", "accessrequests", name=request.role,
                                      namespace="" if request.namespace == "*" else request.namespace)

    def _check_approver(self, request: AccessRequest, approver: Identity) -> None:
        if approver.user == request.user:
            raise AccessError(403, "nobody may decide on their own access request")
        decision = self._may_approve(approver, request)
        if not decision.allowed:
            raise AccessError(403, f'user "{approver.user}" may not approve role {request.role} on cluster '
                                   f'"{request.cluster}" ({decision.reason})')

    async def _decide(self, request_id: str, approver: Identity, approve: bool) -> AccessRequest:
        raw, request = await self._pending(request_id)
        self._check_approver(request, approver)
        if approve:
            decided = replace(request, status="approved", decided_by=approver.user,
                              expires_at=self.clock() + request.duration_seconds)
        else:
            decided = replace(request, status="denied", decided_by=approver.user)
        if not await self.store.swap(KIND, request_id, raw, _dump(decided)):
            raise AccessError(409, f"access request {request_id} was decided by someone else meanwhile")
        if approve:
            await self.store.put(GRANTS, request_id, _dump(decided))
        await self._open_change(request.user, remove=request_id)
        self.audit(decided.status, decided, approver.user)
        return decided

    async def approve(self, request_id: str, approver: Identity) -> AccessRequest:
        return await self._decide(request_id, approver, True)

    async def deny(self, request_id: str, approver: Identity) -> AccessRequest:
        return await self._decide(request_id, approver, False)

    async def expire(self) -> list[AccessRequest]:
        """Mark grants whose time is up as expired; each is audited once, by whichever replica wins."""
        now = self.clock()
        out = []
        for request_id, grant_raw in (await self.store.items(GRANTS)).items():
            if now < _load(grant_raw).expires_at:
                continue
            raw = await self.store.get(KIND, request_id)
            request = _load(raw) if raw else None
            if raw is not None and request is not None and request.status == "approved":
                expired = replace(request, status="expired")
                if await self.store.swap(KIND, request_id, raw, _dump(expired)):
                    self.audit("expired", expired, "kubegate")
                    out.append(expired)
            await self.store.swap(GRANTS, request_id, grant_raw, None)
        return out

    async def purge(self) -> None:
        """Requests nobody decided within a day lapse (audited once); decided and lapsed records
        past their retention are deleted. Reads every record: run now and then, not per request."""
        now = self.clock()
        for request_id, raw in (await self.store.items(KIND)).items():
            request = _load(raw)
            if request.status == "pending" and now >= request.created + PENDING_TTL_SECONDS:
                lapsed = replace(request, status="expired", expires_at=now)
                if await self.store.swap(KIND, request_id, raw, _dump(lapsed)):
                    await self._open_change(request.user, remove=request_id)
                    self.audit("expired", lapsed, "kubegate")
            elif request.status in ("denied", "expired") and \
                    now >= max(request.created, request.expires_at) + RETENTION_SECONDS:
                await self.store.swap(KIND, request_id, raw, None)

    def bindings(self, user: str) -> list[Binding]:
        """The user's active grants as bindings (read by the authorizer during a decision)."""
        now = self.clock()
        return [Binding(f"user:{r.user}", f"role:{r.role}", r.scope, Source(f"access-request/{r.id}", 0))
                for r in self._requests.values() if r.user == user and r.active(now)]

    async def _reload(self) -> None:
        # Only approved grants: a flood of waiting requests changes nothing authorization reads.
        self._requests = {r.id: r for r in map(_load, (await self.store.items(GRANTS)).values())}
        self._next_expiry = min((r.expires_at for r in self._requests.values() if r.status == "approved"),
                                default=float("inf"))

    async def sync(self, authorizer: Authorizer) -> None:
        """Before a decision: load grants that changed (on any replica), expire what is due, and
        drop cached decisions when either happened. A store that cannot answer means no grants."""
        try:
            version = await self.store.version(GRANTS)
            if version != self._version:
                await self._reload()
            if self.clock() >= self._next_expiry:
                await self.expire()
                version = await self.store.version(GRANTS)
                await self._reload()
            self._outage_logged = False
        except StoreUnavailable as e:
            if not self._outage_logged:
                log.warning("access grants are not applied while the state store is unavailable: %s", e)
                self._outage_logged = True
            version = -1
            self._requests = {}
        if version != self._version or id(authorizer) != self._authorizer_seen:
            authorizer.invalidate()
            self._version, self._authorizer_seen = version, id(authorizer)
