"""The webshell's pages: Jinja2 templates (templates/) with autoescape on, one stylesheet, no
framework, keyboard-first.

Every value reaches the HTML through the templates' escaping; nothing here builds markup from
strings. The gateway's answers (tickets, access requests, brakes) are passed as they came: a key
the gateway leaves out renders empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from kubegate.blast_view import radius_lines

from .history import ApiEvent, TerminalRecord
from .sessions import WebSession

TEMPLATES = Path(__file__).resolve().parent / "templates"

TERMINAL_SCRIPTS = ("/static/vendor/xterm.js", "/static/vendor/addon-fit.js", "/static/terminal.js")
WATCH_SCRIPTS = ("/static/vendor/xterm.js", "/static/vendor/addon-fit.js", "/static/watch.js")
REPLAY_SCRIPTS = ("/static/vendor/asciinema-player.min.js", "/static/replay.js")


def _when(stamp: object) -> str:
    """An RFC 3339 time as a person reads it: to the second, with a space for the T."""
    return str(stamp or "")[:19].replace("T", " ")


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,  # every page is HTML; nothing opts out
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)
_env.filters["when"] = _when
_env.filters["radius_lines"] = radius_lines


@dataclass(frozen=True)
class Chrome:
    """What every signed-in page shows around its content: the emergency brakes in force (a banner)
    and how many tickets wait for this person's decision (a badge on the Approvals link)."""

    brakes: list[dict[str, Any]] = field(default_factory=list)
    waiting: int = 0


NO_CHROME = Chrome()


def _render(template: str, title: str, session: WebSession | None = None, chrome: Chrome = NO_CHROME,
            scripts: tuple[str, ...] = (), styles: tuple[str, ...] = (), **values: Any) -> str:
    return _env.get_template(template).render(title=title, session=session, chrome=chrome, scripts=scripts,
                                              styles=styles, **values)


def login(error: str, csrf: str, sso: bool) -> str:
    return _render("login.html", "Sign in", error=error, csrf=csrf, sso=sso)


def home(session: WebSession, clusters: tuple[str, ...], default: str, chrome: Chrome = NO_CHROME) -> str:
    return _render("home.html", "Clusters", session, chrome, clusters=clusters, default=default)


def terminal(session: WebSession, cluster: str, namespace: str, chrome: Chrome = NO_CHROME) -> str:
    return _render("terminal.html", f"Terminal on {cluster}", session, chrome, scripts=TERMINAL_SCRIPTS,
                   styles=("/static/vendor/xterm.css",), cluster=cluster, namespace=namespace)


def message(title: str, text: str, session: WebSession | None = None, chrome: Chrome = NO_CHROME) -> str:
    return _render("message.html", title, session, chrome, text=text)


def sessions(session: WebSession, records: list[TerminalRecord], live: set[str], auditor: bool,
             filters: dict[str, str], chrome: Chrome = NO_CHROME) -> str:
    return _render("sessions.html", "Sessions", session, chrome, records=records, live=live, auditor=auditor,
                   filters=filters)


def replay(session: WebSession, record: TerminalRecord, events: list[ApiEvent], live: bool,
           chrome: Chrome = NO_CHROME) -> str:
    return _render("replay.html", f"Session of {record.user}", session, chrome,
                   scripts=WATCH_SCRIPTS if live else REPLAY_SCRIPTS,
                   styles=("/static/vendor/xterm.css",) if live else ("/static/vendor/asciinema-player.css",),
                   record=record, events=events, live=live)


def access(session: WebSession, items: list[dict[str, object]], clusters: tuple[str, ...], error: str = "",
           notice: str = "", chrome: Chrome = NO_CHROME) -> str:
    return _render("access.html", "Access requests", session, chrome, items=items, clusters=clusters, error=error,
                   notice=notice)


def approvals(session: WebSession, items: list[dict[str, object]], error: str = "", notice: str = "",
              chrome: Chrome = NO_CHROME) -> str:
    return _render("approvals.html", "Approvals", session, chrome, items=items, error=error, notice=notice)
