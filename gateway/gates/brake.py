"""The emergency brake: one call stops every change in its scope, on every replica and worker.

`kubegate brake on [--cluster C] [--namespace N] --reason TEXT [--ttl 1h]` records a brake in the
state store. Every mutation (and every proxied request, which can change anything) a brake covers
is then held like a change inside a freeze window: refused with a break-glass ticket, so that the
one change that must go through during an incident can, with a second person's approval. Reads
go on. Each process asks the store for the brakes' version on every mutation (one small read) and
reloads them when it moved, so the first request after `brake on` returns is held on every replica;
should the store not answer, the brakes last read stay in force. Who may pull (`create`) and
release (`delete`) `brakes.kubegate.io` is policy (policies/authz/access.csv); every pull,
release and expiry is an audit event; `kubegate_brakes_active` counts the brakes in force.
With the memory store a brake holds in the process that took it only (a single replica): the
status says so.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from ..authz.authorizer import PolicyHolder
from ..context import GateContext
from ..errors import Answer, Denial
from ..identity.identity import Identity
from ..state.store import StateStore, StoreUnavailable, room_for

log = logging.getLogger("kubegate.brake")
KIND = "brakes"
MAX_BRAKES = 100
MAX_TTL_SECONDS = 7 * 24 * 3600
API = "/kubegate/v1/brakes"
_SCOPE = re.compile(r"^[a-z0-9*?.\-]{1,63}$")


@dataclass(frozen=True)
class Brake:
    id: str
    cluster: str  # a cluster name or glob ("*": every cluster)
    namespace: str  # a namespace, or "*" (every namespace and cluster-scoped objects)
    reason: str
    by: str
    pulled_at: float
    expires_at: float = 0.0  # 0: until released

    def active(self, now: float) -> bool:
        return not self.expires_at or now < self.expires_at

    def covers(self, cluster: str, namespace: str) -> bool:
        return fnmatch.fnmatchcase(cluster, self.cluster) and self.namespace in ("*", namespace)

    @property
    def scope(self) -> str:
        return f"cluster {self.cluster}" + ("" if self.namespace == "*" else f", namespace {self.namespace}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": "Brake", **asdict(self), "scope": self.scope}


class BrakeError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


AuditHook = Callable[[str, Brake, str], None]


class BrakeService:
    def __init__(self, store: StateStore, policy: PolicyHolder, *, shared: bool, clock: Callable[[], float] = time.time,
                 audit: AuditHook | None = None, on_change: Callable[[int], None] | None = None) -> None:
        self.store, self.policy, self.shared, self.clock = store, policy, shared, clock
        self.audit = audit or (lambda event, brake, actor: None)
        self.on_change = on_change or (lambda active: None)
        self._version: int | None = None
        self._brakes: list[Brake] = []
        self._outage_logged = False

    async def current(self) -> list[Brake]:
        """The brakes in force now, as the store has them (the last read ones while it cannot answer)."""
        try:
            version = await self.store.version(KIND)
            if version != self._version:
                self._brakes = [Brake(**json.loads(v)) for v in (await self.store.items(KIND)).values()]
                self._version = version
            self._outage_logged = False
        except StoreUnavailable as e:
            if not self._outage_logged:
                log.warning("the brakes cannot be read from the state store (%s): the %d read last stay in force",
                            e, len(self._brakes))
                self._outage_logged = True
        now = self.clock()
        active = [b for b in self._brakes if b.active(now)]
        self.on_change(len(active))
        return active

    def _may(self, identity: Identity, verb: str, brake: Brake) -> None:
        cluster = brake.cluster if "*" not in brake.cluster and "?" not in brake.cluster else "*"
        decision = self.policy.decide_own(identity, cluster, verb, "brakes",
                                          namespace="" if brake.namespace == "*" else brake.namespace, name=brake.id)
        if not decision.allowed:
            what = "pull" if verb == "create" else "release"
            raise BrakeError(403, f'user "{identity.user}" may not {what} the emergency brake for {brake.scope} '
                                  f"({decision.reason})")

    async def pull(self, identity: Identity, cluster: str, namespace: str, reason: str, ttl_seconds: float) -> Brake:
        if not _SCOPE.match(cluster) or not _SCOPE.match(namespace):
            raise BrakeError(400, "cluster and namespace are names or globs (letters, digits, '-', '.', '*', '?')")
        if not reason.strip() or len(reason) > 1000 or any(ord(c) < 0x20 for c in reason):
            raise BrakeError(400, "a brake needs a reason (one line, at most 1000 characters): it is what everyone "
                                  "whose change is held reads")
        if not 0 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise BrakeError(400, f"ttlSeconds must be from 0 (until released) to {MAX_TTL_SECONDS}")
        now = self.clock()
        brake = Brake(secrets.token_hex(5), cluster, namespace, reason.strip(), identity.user, now,
                      now + ttl_seconds if ttl_seconds else 0.0)
        self._may(identity, "create", brake)
        await room_for(self.store, KIND, "brakes", MAX_BRAKES)
        await self.store.put(KIND, brake.id, json.dumps(asdict(brake)))
        self.audit("pulled", brake, identity.user)
        return brake

    async def release(self, identity: Identity, brake_id: str) -> Brake:
        raw = await self.store.get(KIND, brake_id)
        if raw is None:
            raise BrakeError(404, f"no brake {brake_id!r} is on")
        brake = Brake(**json.loads(raw))
        self._may(identity, "delete", brake)
        if not await self.store.swap(KIND, brake_id, raw, None):
            raise BrakeError(409, f"brake {brake_id} was released meanwhile")
        self.audit("released", brake, identity.user)
        return brake

    async def purge(self) -> int:
        """Brakes past their time-to-live are removed (audited as expired)."""
        gone = 0
        for key, raw in (await self.store.items(KIND)).items():
            brake = Brake(**json.loads(raw))
            if not brake.active(self.clock()) and await self.store.swap(KIND, key, raw, None):
                self.audit("expired", brake, "kubegate")
                gone += 1
        return gone


class BrakeGate:
    """A change a brake covers needs break-glass approval (as inside a freeze window); reads go on."""

    name = "brake"

    def __init__(self, brakes: BrakeService) -> None:
        self.brakes = brakes

    async def __call__(self, ctx: GateContext) -> None:
        info = ctx.info
        if info is None or ctx.upstream is None or not info.is_resource:
            return
        if not (info.acts.mutating or info.subresource == "proxy"):
            return
        for brake in await self.brakes.current():
            if brake.covers(ctx.upstream.name, info.namespace):
                ctx.break_glass = True
                until = f" until {_when(brake.expires_at)}" if brake.expires_at else " until released"
                ctx.approval_reasons.append(
                    f"the emergency brake {brake.id} is on for {brake.scope}{until} (pulled by {brake.by} at "
                    f"{_when(brake.pulled_at)}: {brake.reason})")
                ctx.annotations["kubegate.io/brake"] = brake.id


class BrakeApi:
    """/kubegate/v1/brakes: GET the brakes in force, POST to pull one, DELETE …/<id> to release it."""

    name = "brake-api"

    def __init__(self, brakes: BrakeService) -> None:
        self.brakes = brakes

    async def __call__(self, ctx: GateContext) -> None:
        path, method = ctx.request.own_path, ctx.request.method
        if not (path == API or path.startswith(API + "/")):
            return
        assert ctx.identity is not None
        rest = path[len(API) + 1:]
        try:
            if not rest and method == "GET":
                items = [b.to_json() for b in await self.brakes.current()]
                raise Answer(200, "", body={"kind": "BrakeList", "shared": self.brakes.shared, "items": items,
                                            "note": "" if self.brakes.shared else
                                            "memory store: a brake holds on this replica only"})
            if not rest and method == "POST":
                spec = _spec(ctx.request.body)
                brake = await self.brakes.pull(ctx.identity, str(spec.get("cluster", "*")),
                                               str(spec.get("namespace", "*")), str(spec.get("reason", "")),
                                               float(spec.get("ttlSeconds", 0)))
                ctx.annotations["kubegate.io/brake"] = brake.id
                raise Answer(201, "", body=brake.to_json())
            if rest and "/" not in rest and method == "DELETE":
                ctx.annotations["kubegate.io/brake"] = rest
                raise Answer(200, "", body=(await self.brakes.release(ctx.identity, rest)).to_json())
        except BrakeError as e:
            raise Denial(e.code, f"kubegate: {e.message}") from None
        except StoreUnavailable as e:
            raise Denial(503, f"kubegate: the brakes are unavailable: {e}", "ServiceUnavailable") from None
        raise Denial(404, f"kubegate: no such brakes API call: {method} {path}", "NotFound")


def _spec(body: bytes) -> dict[str, Any]:
    try:
        spec = json.loads(body or b"{}")
    except ValueError:
        raise BrakeError(400, "the body must be JSON: {cluster, namespace, reason, ttlSeconds}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("ttlSeconds", 0), (int, float)) \
            or isinstance(spec.get("ttlSeconds", 0), bool):
        raise BrakeError(400, "the body must be {cluster, namespace, reason, ttlSeconds (a number)}")
    return spec
