"""Token revocation: one token (by its `jti`), or every token of a user issued before now.

Offboarding, or a token that leaked, without a deny line in the policy or a new signing key for
everyone. A revocation is a record in the state store (so every replica refuses it); each process
reads them again whenever their version moves, at least once a second (`sync`, from the server's
loop) and at once after a revocation it made itself, so a revoked token stops working on every
replica within about a second. Checking a request costs no store call. A user's revocation applies
to the tokens issued before it (their `iat`), kubegate's and OIDC issuers' alike, so a new login
works again; a token without `iat` counts as issued at the epoch. A record lapses once every token
it could refuse has expired (the longest a token lives: `issuer.max_ttl_seconds`, or an OIDC
token's own `exp`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol

log = logging.getLogger("kubegate.revocations")
KIND = "tokens-revoked"  # "token:<jti>" / "user:<name>" -> Revocation (JSON)
MAX_RECORDS = 10_000


class Records(Protocol):
    """The part of the state store (state.store.StateStore) revocations use."""

    async def put(self, kind: str, id: str, value: str) -> None: ...
    async def items(self, kind: str) -> dict[str, str]: ...
    async def swap(self, kind: str, id: str, expected: str | None, value: str | None) -> bool: ...
    async def count(self, kind: str) -> int: ...
    async def version(self, kind: str) -> int: ...


@dataclass(frozen=True)
class Revocation:
    key: str  # "token:<jti>" or "user:<name>"
    by: str
    reason: str
    at: float  # tokens of the user issued before this are refused
    until: float  # when the record lapses (every token it could refuse has expired)

    def to_json(self) -> dict[str, object]:
        kind, _, subject = self.key.partition(":")
        return {"kind": "TokenRevocation", "what": kind, "subject": subject, "by": self.by, "reason": self.reason,
                "at": self.at, "until": self.until}


class RevocationError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Revocations:
    def __init__(self, store: Records, *, max_ttl_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.store, self.max_ttl, self.clock = store, max_ttl_seconds, clock
        self._version: int | None = None
        self._tokens: dict[str, Revocation] = {}
        self._users: dict[str, Revocation] = {}

    async def sync(self) -> None:
        """Read the revocations again if they changed (on any replica). StoreUnavailable propagates:
        the ones read last stay in force."""
        version = await self.store.version(KIND)
        if version == self._version:
            return
        records = [Revocation(**json.loads(v)) for v in (await self.store.items(KIND)).values()]
        self._tokens = {r.key[6:]: r for r in records if r.key.startswith("token:")}
        self._users = {r.key[5:]: r for r in records if r.key.startswith("user:")}
        self._version = version

    def refused(self, user: str, token_id: str, issued_at: float) -> str:
        """Why a token is revoked ("" when it is not)."""
        if token_id and (r := self._tokens.get(token_id)) is not None:
            return f"token {token_id} was revoked by {r.by}: {r.reason}"
        r = self._users.get(user)
        if r is not None and issued_at < r.at:
            return f"every token of {user} issued before {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(r.at))} " \
                   f"was revoked by {r.by}: {r.reason}; log in again if you still may"
        return ""

    async def revoke(self, *, by: str, reason: str, token_id: str = "", user: str = "",
                     expires: float = 0.0) -> Revocation:
        if bool(token_id) == bool(user):
            raise RevocationError(400, "revoke either one token (its id, the jti claim) or one user's tokens")
        if not reason.strip() or len(reason) > 1000 or any(ord(c) < 0x20 for c in reason):
            raise RevocationError(400, "a revocation needs a reason (one line, at most 1000 characters)")
        subject = token_id or user
        if len(subject) > 512 or any(ord(c) < 0x20 for c in subject):
            raise RevocationError(400, "the token id or user name is not printable")
        if await self.store.count(KIND) >= MAX_RECORDS:
            raise RevocationError(429, f"{MAX_RECORDS} revocations are in force, the most kept; they lapse as the "
                                       "tokens they refuse expire (rotate the signing key to refuse everything)")
        now = self.clock()
        until = max(expires, now + self.max_ttl) if user or not expires else expires
        record = Revocation(f"token:{token_id}" if token_id else f"user:{user}", by, reason.strip(), now, until)
        await self.store.put(KIND, record.key, json.dumps(record.__dict__))
        await self.sync()
        return record

    async def all(self) -> list[Revocation]:
        return sorted((Revocation(**json.loads(v)) for v in (await self.store.items(KIND)).values()),
                      key=lambda r: r.at)

    async def purge(self) -> int:
        now, gone = self.clock(), 0
        for key, raw in (await self.store.items(KIND)).items():
            if Revocation(**json.loads(raw)).until <= now and await self.store.swap(KIND, key, raw, None):
                gone += 1
        return gone
