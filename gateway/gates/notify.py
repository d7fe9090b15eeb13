"""Approver notifications: each step of an approval ticket (requested, approved, denied, used,
expired, withdrawn) sent to the configured targets — a generic webhook (kubegate's JSON body) or a
Slack-compatible incoming webhook — so nobody has to watch `kubegate approvals list`.

Never on the request path: a step is queued (bounded: past MAX_QUEUED the oldest is dropped and
counted) and a background task delivers it, retrying a failed delivery (5 attempts, backing off
1, 2, 4, 8 s). The body carries what an approver needs to decide where to look, never the
request body: the ticket's request line, reasons and blast-radius summary, and the command to
approve it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections import deque
from typing import Any, Callable

import aiohttp

from ..config.settings import NotificationTarget
from ..metrics import Metrics
from .approvals import Ticket

log = logging.getLogger("kubegate.notify")
VERSION = "kubegate.io/v1"
ATTEMPTS = 5
MAX_QUEUED = 1000


def body(event: str, ticket: Ticket, actor: str, public_url: str) -> dict[str, Any]:
    """The generic webhook's JSON body (docs/change-gates.md#notifications)."""
    radius = (ticket.blast_radius or {}).get("summary") if ticket.blast_radius else None
    return {"apiVersion": VERSION, "kind": "ApprovalNotification", "event": event, "actor": actor,
            "ticket": {"id": ticket.id, "type": ticket.kind, "status": ticket.status, "user": ticket.user,
                       "cluster": ticket.cluster, "verb": ticket.verb, "resource": ticket.resource,
                       "namespace": ticket.namespace, "name": ticket.name, "reasons": ticket.reasons,
                       "request": f"{ticket.method} {ticket.path}" + (f"?{ticket.query}" if ticket.query else ""),
                       "blastRadius": radius, "decidedBy": ticket.decided_by, "expiresAt": ticket.expires_at},
            "approve": f"kubegate approvals approve {ticket.id}",
            "url": f"{public_url.rstrip('/')}/kubegate/v1/approvals/{ticket.id}"}


def slack_text(event: str, ticket: Ticket, actor: str) -> str:
    where = f"{ticket.namespace}/{ticket.name}" if ticket.namespace else ticket.name
    what = f"`{ticket.verb} {ticket.resource} {where}` in *{ticket.cluster}*"
    if event == "requested":
        kind = "break-glass " if ticket.kind == "break-glass" else ""
        lines = [f":hourglass: *{ticket.user}* asks for {kind}approval: {what}",
                 *[f"• {r}" for r in ticket.reasons[:5]]]
        if ticket.blast_radius and ticket.blast_radius.get("summary"):
            lines.append(f"Blast radius: {ticket.blast_radius['summary']}")
        lines.append(f"`kubegate approvals show {ticket.id}` · `kubegate approvals approve {ticket.id}`")
        return "\n".join(lines)
    verbs = {"approved": ":white_check_mark: approved by", "denied": ":no_entry: denied by",
             "used": ":arrow_forward: used by", "expired": ":zzz: lapsed undecided", "withdrawn": ":leftwards_arrow_with_hook: withdrawn by"}
    who = "" if event == "expired" else f" *{actor}*"
    return f"Ticket {ticket.id} ({ticket.user}: {what}) {verbs.get(event, event)}{who}"


class Notifier:
    def __init__(self, targets: list[NotificationTarget], public_url: str, path: Callable[[str], Any],
                 metrics: Metrics | None = None, backoff: float = 1.0) -> None:
        self.targets, self.public_url, self.metrics, self.backoff = targets, public_url, metrics, backoff
        self._contexts = {t.name: ssl.create_default_context(cafile=str(path(t.ca_file)) if t.ca_file else None)
                          for t in targets if t.url.startswith("https://")}
        self._queue: deque[tuple[NotificationTarget, bytes]] = deque()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def ticket(self, event: str, ticket: Ticket, actor: str) -> None:
        """Queue a ticket's step for every target that wants it (returns at once)."""
        for target in self.targets:
            if event not in target.events:
                continue
            payload = {"text": slack_text(event, ticket, actor)} if target.kind == "slack" else \
                body(event, ticket, actor, self.public_url)
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
                self._count(target, "dropped")
            self._queue.append((target, json.dumps(payload).encode()))
        self._wake.set()

    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="approver-notifications")

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            target, payload = self._queue.popleft()
            await self._deliver(target, payload)

    async def _deliver(self, target: NotificationTarget, payload: bytes) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for attempt in range(ATTEMPTS):
            try:
                async with self._session.post(target.url, data=payload, headers={"Content-Type": "application/json"},
                                              ssl=self._contexts.get(target.name, False),
                                              timeout=aiohttp.ClientTimeout(total=target.timeout_seconds)) as resp:
                    if 200 <= resp.status < 300:
                        self._count(target, "sent")
                        return
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                problem = str(e) or type(e).__name__
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(self.backoff * 2 ** attempt)
        log.warning("notification target %s did not take a notification after %d attempts (%s)", target.name,
                    ATTEMPTS, problem)
        self._count(target, "failed")

    def _count(self, target: NotificationTarget, result: str) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(target.name, result).inc()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._session is not None:
            await self._session.close()
