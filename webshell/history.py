"""The webshell's sessions as the audit log tells them: who opened which terminal where, when it
ended, its recording, and the API requests made under its session token. Read from the gateway's
audit log file (the JSONL the gateway writes), so what auditors see is what the hash chain vouches for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from kubegate.audit import events

TERMINAL_ID = "kubegate.io/terminal"


@dataclass
class TerminalRecord:
    id: str
    session: str  # the gateway session id (what API events carry)
    user: str
    cluster: str
    namespace: str
    started: str
    recording: str
    ended: str = ""
    why: str = ""
    sha256: str = ""
    refusals: int = 0
    commands: int = 0


def _events(path: Path) -> Iterator[dict[str, Any]]:
    return events.read([path])


def terminals(audit_log: Path) -> list[TerminalRecord]:
    """Every terminal the log records, newest first."""
    found: dict[str, TerminalRecord] = {}
    for event in _events(audit_log):
        a = event.get("annotations") or {}
        kind, tid = a.get("kubegate.io/webshell-event"), a.get(TERMINAL_ID)
        if not kind or not tid:
            continue
        if kind == "terminal-started":
            found[tid] = TerminalRecord(tid, a.get("kubegate.io/session", ""), (event.get("user") or {}).get("username", ""),
                                        a.get("kubegate.io/cluster", ""), a.get("kubegate.io/namespace", ""),
                                        event.get("stageTimestamp", ""), a.get("kubegate.io/recording", ""))
        elif tid in found:
            record = found[tid]
            if kind == "terminal-ended":
                record.ended, record.why = event.get("stageTimestamp", ""), a.get("kubegate.io/why", "")
                record.sha256 = a.get("kubegate.io/recording-sha256", "")
            elif kind == "refused":
                record.refusals += 1
            elif kind == "command":
                record.commands += 1
    return sorted(found.values(), key=lambda r: r.started, reverse=True)


@dataclass
class ApiEvent:
    time: str
    verb: str
    uri: str
    code: int
    decision: str
    annotations: dict[str, str] = field(default_factory=dict)


def api_events(audit_log: Path, session: str, limit: int = 500) -> list[ApiEvent]:
    """The API requests made with the session's token (the kubegate.io/session user extra)."""
    out = []
    for event in _events(audit_log):
        extra = (event.get("user") or {}).get("extra") or {}
        if extra.get("kubegate.io/session") != [session] or event.get("stage") != "ResponseComplete":
            continue
        a = event.get("annotations") or {}
        out.append(ApiEvent(event.get("stageTimestamp", ""), event.get("verb", ""), event.get("requestURI", ""),
                            int((event.get("responseStatus") or {}).get("code") or 0), a.get("kubegate.io/decision", ""), a))
    return out[-limit:]
