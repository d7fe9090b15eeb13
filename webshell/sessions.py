"""Browser sessions of the webshell: who is logged in, until when, with which session token.

A session is created by a login (OIDC or a pasted token) traded at the gateway for a session token
(/kubegate/v1/sessions); the browser holds only a random session id in an HttpOnly, Secure,
SameSite=Strict cookie, never a token. Each session has a CSRF token for its forms, an idle and an
absolute timeout, and its own directory. Sessions live in this process: a browser is pinned to the
replica it logged in on (a sticky Service), and a restart logs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class WebSession:
    id: str
    user: str
    groups: tuple[str, ...]
    token: str  # the gateway session token; stays on the server
    token_session: str  # its session id at the gateway (what audit events carry)
    expires: float  # absolute end (the token's own expiry or max_seconds, whichever first)
    csrf: str
    directory: Path
    last_seen: float = field(default_factory=time.time)
    terminals: int = 0

    def is_auditor(self, auditor_groups: tuple[str, ...]) -> bool:
        return any(g in auditor_groups for g in self.groups)


class Sessions:
    def __init__(self, work_dir: Path, *, idle_seconds: int, max_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.work_dir, self.idle, self.max, self.clock = work_dir, idle_seconds, max_seconds, clock
        self._by_id: dict[str, WebSession] = {}

    def create(self, user: str, groups: tuple[str, ...], token: str, token_session: str,
               token_expires: float) -> WebSession:
        sid = secrets.token_urlsafe(32)
        directory = self.work_dir / "sessions" / token_session
        for sub in ("files", "home"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        session = WebSession(sid, user, groups, token, token_session,
                             min(token_expires, self.clock() + self.max), secrets.token_urlsafe(24), directory,
                             last_seen=self.clock())
        self._by_id[sid] = session
        return session

    def get(self, sid: str | None) -> WebSession | None:
        """The live session for a cookie value (touching it), or None (unknown, idle, over)."""
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is None:
            return None
        now = self.clock()
        if now >= session.expires or now - session.last_seen > self.idle:
            return None
        session.last_seen = now
        return session

    def expired(self) -> list[WebSession]:
        """Sessions past a timeout, removed from the live set (the caller ends them at the gateway)."""
        now = self.clock()
        gone = [s for s in self._by_id.values() if now >= s.expires or now - s.last_seen > self.idle]
        for s in gone:
            self.drop(s)
        return gone

    def drop(self, session: WebSession) -> None:
        self._by_id.pop(session.id, None)
        shutil.rmtree(session.directory, ignore_errors=True)

    def live(self) -> list[WebSession]:
        return list(self._by_id.values())

    @staticmethod
    def csrf_ok(session: WebSession, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf, presented or "")
