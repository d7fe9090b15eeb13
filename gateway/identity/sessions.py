"""Short-lived session tokens: what the webshell (or any client) trades a login for.

`POST /kubegate/v1/sessions` with a valid token (a user's OIDC ID token or a kubegate token) mints a
token for the same identity bound to a new session id (`sid` claim; forwarded to the cluster as the
`kubegate.io/session` user extra, recorded in every audit event), living no longer than the token
presented, the requested time and `MAX_SECONDS`. `DELETE /kubegate/v1/sessions/<sid>`, with that
session's own token, ends it: the id is recorded as ended in the state store (so every replica
refuses it) until its tokens would have expired anyway. A session token cannot mint another one.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Protocol

from .authn import TokenIssuer
from .identity import Identity


class Records(Protocol):
    """The part of the state store (state.store.StateStore) sessions use."""

    async def put(self, kind: str, id: str, value: str) -> None: ...
    async def get(self, kind: str, id: str) -> str | None: ...
    async def items(self, kind: str) -> dict[str, str]: ...
    async def swap(self, kind: str, id: str, expected: str | None, value: str | None) -> bool: ...
    async def count(self, kind: str) -> int: ...

MAX_SECONDS = 12 * 3600
ENDED = "sessions-ended"  # store record kind: session id -> when its tokens expire (then purged)
MAX_ENDED = 10_000


class SessionError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class SessionService:
    def __init__(self, store: Records, issuer: TokenIssuer, *, clock: Callable[[], float] = time.time) -> None:
        self.store, self.issuer, self.clock = store, issuer, clock
        self._ended: set[str] = set()  # known ended here: a positive answer never changes

    async def mint(self, identity: Identity, presented_expires: float, ttl_seconds: int) -> dict[str, object]:
        if identity.session:
            raise SessionError(403, "a session token cannot start another session")
        # Every session started may end up as a record (its logout): bounded before it starts, so a
        # logout is never refused for room.
        if await self.store.count(ENDED) >= MAX_ENDED:
            raise SessionError(429, f"{MAX_ENDED} sessions ended in the last {MAX_SECONDS // 3600} hours are on "
                                    "record, the most kept; new sessions start again as those records lapse")
        now = self.clock()
        ttl = int(min(ttl_seconds, MAX_SECONDS, presented_expires - now, self.issuer.cfg.max_ttl_seconds))
        if ttl < 60:
            raise SessionError(400, "the token presented expires within a minute; log in again")
        sid = f"s-{uuid.uuid4().hex}"
        token = self.issuer.issue(identity.user, identity.groups, ttl_seconds=ttl, uid=identity.uid,
                                  extra={k: list(v) for k, v in identity.extra.items()} or None, session=sid)
        return {"kind": "Session", "id": sid, "user": identity.user, "groups": list(identity.groups), "token": token,
                "expiresAt": now + ttl}

    async def end(self, sid: str, identity: Identity) -> None:
        if identity.session != sid:
            raise SessionError(403, "only the session's own token ends it")
        await self.store.put(ENDED, sid, str(self.clock() + MAX_SECONDS))
        self._ended.add(sid)

    async def purge(self) -> int:
        """Forget ended sessions whose tokens have expired anyway (the record's value: when)."""
        now, gone = self.clock(), 0
        for sid, until in (await self.store.items(ENDED)).items():
            try:
                lapsed = float(until) <= now
            except ValueError:
                lapsed = True
            if lapsed and await self.store.swap(ENDED, sid, until, None):
                gone += 1
        return gone

    async def ended(self, sid: str) -> bool:
        if sid in self._ended:
            return True
        if await self.store.get(ENDED, sid) is not None:
            self._ended.add(sid)
            return True
        return False
