"""Time-bound access: a user asks for a role in a scope for a while, another person approves.

An approved request becomes a binding of the role to the user, valid until it expires; the
authorizer sees it like any binding in the policy files. The approver is never the requester,
and must be allowed `approve` on `accessrequests.kubegate.io` named after the role, in the
requested scope, by the policy in force (access.csv in the starter set).

Requests live in a `RequestStore`: in memory for one replica; a shared store (Redis) makes a
grant effective on every replica.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Literal, Protocol

from .authz import Authorizer, PolicyHolder
from .identity import Identity
from .policy import Binding, Source
from .requestinfo import RequestInfo

Status = Literal["pending", "approved", "denied", "expired"]
MAX_DURATION_SECONDS = 24 * 3600


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


class RequestStore(Protocol):
    def put(self, request: AccessRequest) -> None: ...
    def get(self, request_id: str) -> AccessRequest | None: ...
    def all(self) -> list[AccessRequest]: ...
    def version(self) -> int:
        """Changes whenever any request changes (decision caches depend on it)."""


class MemoryRequestStore:
    def __init__(self) -> None:
        self._items: dict[str, AccessRequest] = {}
        self._version = 0
        self._lock = threading.Lock()

    def put(self, request: AccessRequest) -> None:
        with self._lock:
            self._items[request.id] = request
            self._version += 1

    def get(self, request_id: str) -> AccessRequest | None:
        return self._items.get(request_id)

    def all(self) -> list[AccessRequest]:
        return sorted(self._items.values(), key=lambda r: r.created)

    def version(self) -> int:
        return self._version


AuditHook = Callable[[str, AccessRequest, str], None]  # (event, request, actor)


class AccessService:
    def __init__(self, store: RequestStore, policy: PolicyHolder, *, clock: Callable[[], float] = time.time,
                 audit: AuditHook | None = None) -> None:
        self.store, self.policy, self.clock = store, policy, clock
        self.audit = audit or (lambda event, request, actor: None)
        self._seen: tuple[int, int] | None = None  # (store version, authorizer identity) last synced
        self._next_expiry = float("inf")
        self._expiry_version = -1
        policy.set_extra_bindings(self.bindings)

    def _roles(self) -> set[str]:
        return {r.subject.removeprefix("role:") for r in self.policy.current.policy.rules if r.subject.startswith("role:")}

    def request(self, identity: Identity, role: str, cluster: str, namespace: str, duration_seconds: int,
                reason: str) -> AccessRequest:
        if role not in self._roles():
            raise AccessError(400, f"no role named {role!r} in the policy in force")
        if not 0 < duration_seconds <= MAX_DURATION_SECONDS:
            raise AccessError(400, f"the duration must be between 1 second and {MAX_DURATION_SECONDS // 3600} hours")
        if not reason.strip():
            raise AccessError(400, "a reason is required: approvers decide on it and the audit keeps it")
        request = AccessRequest(secrets.token_hex(6), identity.user, role, cluster, namespace or "*", reason.strip(),
                                duration_seconds, self.clock())
        self.store.put(request)
        self.audit("requested", request, identity.user)
        return request

    def _pending(self, request_id: str) -> AccessRequest:
        request = self.store.get(request_id)
        if request is None:
            raise AccessError(404, f"no access request {request_id!r}")
        if request.status != "pending":
            raise AccessError(409, f"access request {request_id} is already {request.status}")
        return request

    def _check_approver(self, request: AccessRequest, approver: Identity) -> None:
        if approver.user == request.user:
            raise AccessError(403, "nobody may decide on their own access request")
        info = RequestInfo(path="", verb="approve", is_resource=True, api_group="kubegate.io",
                           namespace="" if request.namespace == "*" else request.namespace,
                           resource="accessrequests", name=request.role)
        decision = self.policy.current.decide(approver, request.cluster, info)
        if not decision.allowed:
            raise AccessError(403, f'user "{approver.user}" may not approve role {request.role} on cluster '
                                   f'"{request.cluster}" ({decision.reason})')

    def approve(self, request_id: str, approver: Identity) -> AccessRequest:
        request = self._pending(request_id)
        self._check_approver(request, approver)
        approved = replace(request, status="approved", decided_by=approver.user,
                           expires_at=self.clock() + request.duration_seconds)
        self.store.put(approved)
        self.audit("approved", approved, approver.user)
        return approved

    def deny(self, request_id: str, approver: Identity) -> AccessRequest:
        request = self._pending(request_id)
        self._check_approver(request, approver)
        denied = replace(request, status="denied", decided_by=approver.user)
        self.store.put(denied)
        self.audit("denied", denied, approver.user)
        return denied

    def expire(self) -> list[AccessRequest]:
        """Mark grants whose time is up as expired (each audited once)."""
        now = self.clock()
        out = []
        for request in self.store.all():
            if request.status == "approved" and now >= request.expires_at:
                expired = replace(request, status="expired")
                self.store.put(expired)
                self.audit("expired", expired, "kubegate")
                out.append(expired)
        return out

    def bindings(self, user: str) -> list[Binding]:
        now = self.clock()
        return [Binding(f"user:{r.user}", f"role:{r.role}", r.scope, Source(f"access-request/{r.id}", 0))
                for r in self.store.all() if r.user == user and r.active(now)]

    def sync(self, authorizer: Authorizer) -> None:
        """Before a decision: expire what is due, and drop cached decisions when grants changed."""
        if self.store.version() != self._expiry_version:
            self._next_expiry = min((r.expires_at for r in self.store.all() if r.status == "approved"),
                                    default=float("inf"))
            self._expiry_version = self.store.version()
        if self.clock() >= self._next_expiry:
            self.expire()
        seen = (self.store.version(), id(authorizer))
        if seen != self._seen:
            authorizer.invalidate()
            self._seen = seen
