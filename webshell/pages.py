"""The webshell's pages: plain HTML, escaped, one stylesheet, no framework, keyboard-first."""

from __future__ import annotations

from html import escape

from kubegate.blast_view import radius_lines

from .history import ApiEvent, TerminalRecord
from .sessions import WebSession


def _page(title: str, body: str, session: WebSession | None = None, scripts: tuple[str, ...] = (),
          styles: tuple[str, ...] = ()) -> str:
    nav = ""
    if session is not None:
        nav = (f'<nav aria-label="main"><a href="/">Clusters</a><a href="/sessions">Sessions</a>'
               f'<a href="/approvals">Approvals</a><a href="/access">Access requests</a>'
               f'<span class="who">{escape(session.user)}</span>'
               f'<form method="post" action="/logout"><input type="hidden" name="csrf" value="{escape(session.csrf)}">'
               f'<button type="submit">Log out</button></form></nav>')
    links = "".join(f'<link rel="stylesheet" href="{escape(s)}">' for s in ("/static/style.css", *styles))
    tags = "".join(f'<script src="{escape(s)}"></script>' for s in scripts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)} · kubegate</title>{links}</head>'
            f'<body><header><a class="brand" href="/">kubegate</a>{nav}</header>'
            f'<main id="main">{body}</main>{tags}</body></html>')


def approvals_link(waiting: int) -> str:
    """The Approvals link, with how many tickets wait for this person's decision."""
    if not waiting:
        return '<a href="/approvals">Approvals</a>'
    return (f'<a href="/approvals">Approvals <span class="badge" aria-label="{waiting} waiting for you">{waiting}'
            '</span></a>')


def brake_banner(brakes: list[dict[str, object]]) -> str:
    """While an emergency brake is on: what it covers, who pulled it and why, on every page."""
    if not brakes:
        return ""
    lines = "".join(f"<li><strong>{escape(str(b.get('scope', '')))}</strong>: {escape(str(b.get('reason', '')))} "
                    f"(pulled by {escape(str(b.get('by', '')))})</li>" for b in brakes)
    return (f'<section class="brake" role="alert" aria-label="emergency brake"><p><strong>Emergency brake on.</strong> '
            f'Changes in its scope need break-glass approval; reading goes on.</p><ul>{lines}</ul></section>')


def _alerts(error: str, notice: str = "") -> str:
    """An error (announced to screen readers at once) and a notice, each shown only when there is one."""
    return (f'<p class="error" role="alert">{escape(error)}</p>' if error else "") + \
        (f'<p class="notice" role="status">{escape(notice)}</p>' if notice else "")


def _decision_buttons(session: WebSession, prefix: str, item: dict[str, object]) -> str:
    """Approve and Deny for a pending item someone else asked for (nobody decides their own)."""
    if item.get("status") != "pending" or item.get("user") == session.user:
        return ""
    return "".join(
        f'<form method="post" action="{prefix}/{escape(str(item["id"]))}/{verb}" class="inline">'
        f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
        f'<button type="submit">{verb.capitalize()}</button></form>' for verb in ("approve", "deny"))


def login(error: str, csrf: str, sso: bool) -> str:
    alert = _alerts(error)
    sso_block = ('<p><a class="button primary" href="/login/oidc">Sign in with single sign-on</a></p>'
                 '<p class="or">or</p>') if sso else ""
    return _page("Sign in", f"""
<h1>Sign in to the kubegate webshell</h1>
{alert}
{sso_block}
<form method="post" action="/login" class="card">
  <input type="hidden" name="csrf" value="{escape(csrf)}">
  <label for="token">A kubegate token (<code>kubegate token issue</code>) or an ID token</label>
  <textarea id="token" name="token" rows="4" required autocomplete="off" spellcheck="false"></textarea>
  <button type="submit">Sign in with the token</button>
</form>
<p class="hint">No cluster credential ever reaches your browser: the terminal runs kubectl on the
gateway, as you, with a token that ends with this session.</p>""")


def home(session: WebSession, clusters: tuple[str, ...], default: str) -> str:
    options = "".join(f'<option value="{escape(c)}"{" selected" if c == default else ""}>{escape(c)}</option>'
                      for c in clusters)
    return _page("Clusters", f"""
<h1>Open a terminal</h1>
<form method="get" action="/terminal" class="card">
  <label for="cluster">Cluster</label>
  <select id="cluster" name="cluster">{options}</select>
  <label for="namespace">Namespace (optional)</label>
  <input id="namespace" name="namespace" pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?" maxlength="63" autocomplete="off">
  <button type="submit">Open terminal</button>
</form>
<p class="hint">Every command runs through the gateway: authorized, risk-gated and audited, and this
session is recorded.</p>""", session)


def terminal(session: WebSession, cluster: str, namespace: str) -> str:
    where = escape(cluster) + (f" / {escape(namespace)}" if namespace else "")
    return _page(f"Terminal on {cluster}", f"""
<h1 class="sr-only">Terminal on {where}</h1>
<p class="status" id="status" role="status" aria-live="polite">Connecting to {where}…</p>
<div id="terminal" data-cluster="{escape(cluster)}" data-namespace="{escape(namespace)}"
     aria-label="terminal on {where}"></div>""", session,
                 scripts=("/static/vendor/xterm.js", "/static/vendor/addon-fit.js", "/static/terminal.js"),
                 styles=("/static/vendor/xterm.css",))


def message(title: str, text: str, session: WebSession | None = None, status: str = "") -> str:
    return _page(title, f'<h1>{escape(title)}</h1><p role="alert">{escape(text)}</p>'
                        f'<p><a href="/">Back</a></p>', session)


def sessions(session: WebSession, records: list[TerminalRecord], live: set[str], auditor: bool,
             filters: dict[str, str]) -> str:
    rows = "".join(
        f'<tr><td>{"<strong>live</strong>" if r.id in live else escape(r.ended[:19].replace("T", " ")) or "?"}</td>'
        f'<td>{escape(r.user)}</td><td>{escape(r.cluster)}{(" / " + escape(r.namespace)) if r.namespace else ""}</td>'
        f'<td>{escape(r.started[:19].replace("T", " "))}</td><td>{r.commands}</td><td>{r.refusals}</td>'
        f'<td><a href="/sessions/{escape(r.id)}">{"watch" if r.id in live and auditor else "replay"}</a></td></tr>'
        for r in records)
    scope = "every user's sessions (you are an auditor)" if auditor else "your own sessions"
    return _page("Sessions", f"""
<h1>Terminal sessions</h1>
<p class="hint">Showing {scope}; live sessions first. Every byte in and out is recorded.</p>
<form method="get" action="/sessions" class="filters" aria-label="filter sessions">
  <label for="f-user">User</label><input id="f-user" name="user" value="{escape(filters.get("user", ""))}">
  <label for="f-cluster">Cluster</label><input id="f-cluster" name="cluster" value="{escape(filters.get("cluster", ""))}">
  <label for="f-since">Since (UTC)</label><input id="f-since" name="since" placeholder="2026-11-29T08:00" value="{escape(filters.get("since", ""))}">
  <button type="submit">Filter</button>
</form>
<table><caption class="sr-only">terminal sessions</caption>
<thead><tr><th scope="col">Ended</th><th scope="col">User</th><th scope="col">Where</th><th scope="col">Started</th>
<th scope="col">Commands</th><th scope="col">Refused</th><th scope="col"></th></tr></thead>
<tbody>{rows or '<tr><td colspan="7">No sessions yet.</td></tr>'}</tbody></table>""", session)


def replay(session: WebSession, record: TerminalRecord, events: list[ApiEvent], live: bool) -> str:
    rows = "".join(
        f'<tr><td>{escape(e.time[11:19])}</td><td>{escape(e.verb)}</td><td class="uri">{escape(e.uri)}</td>'
        f'<td>{e.code}</td><td>{escape(e.decision)}</td></tr>' for e in events)
    state = "live: you are watching as it happens" if live else (
        f"ended {escape(record.ended[:19].replace('T', ' '))} ({escape(record.why)}); recording SHA-256 "
        f"<code>{escape(record.sha256[:16])}…</code>")
    player = (f'<div id="live" data-terminal="{escape(record.id)}" aria-label="live terminal"></div>' if live else
              f'<div id="player" data-src="/recordings/{escape(record.id)}.cast" aria-label="session recording"></div>')
    scripts = ("/static/vendor/xterm.js", "/static/vendor/addon-fit.js", "/static/watch.js") if live else \
        ("/static/vendor/asciinema-player.min.js", "/static/replay.js")
    styles = ("/static/vendor/xterm.css",) if live else ("/static/vendor/asciinema-player.css",)
    return _page(f"Session of {record.user}", f"""
<h1>{escape(record.user)} on {escape(record.cluster)}</h1>
<p class="status">Started {escape(record.started[:19].replace("T", " "))}; {state}.</p>
<div class="replay">
  <section aria-label="terminal">{player}</section>
  <section aria-label="API requests of this session">
    <h2>API requests</h2>
    <table><thead><tr><th scope="col">Time</th><th scope="col">Verb</th><th scope="col">Request</th>
    <th scope="col">Code</th><th scope="col">Decision</th></tr></thead>
    <tbody>{rows or '<tr><td colspan="5">None.</td></tr>'}</tbody></table>
  </section>
</div>""", session, scripts=scripts, styles=styles)


def access(session: WebSession, items: list[dict[str, object]], clusters: tuple[str, ...], error: str = "",
           notice: str = "") -> str:
    def actions(item: dict[str, object]) -> str:
        return _decision_buttons(session, "/access", item)
    rows = "".join(
        f'<tr><td><code>{escape(str(i["id"]))}</code></td><td>{escape(str(i["status"]))}</td><td>{escape(str(i["user"]))}</td>'
        f'<td>{escape(str(i["role"]))}</td><td>{escape(str(i["cluster"]))}:{escape(str(i["namespace"]))}</td>'
        f'<td>{int(str(i["durationSeconds"])) // 60} min</td><td>{escape(str(i["reason"]))}</td>'
        f'<td>{escape(str(i.get("decidedBy") or ""))}</td><td>{actions(i)}</td></tr>' for i in items)
    options = "".join(f'<option>{escape(c)}</option>' for c in clusters)
    alert = _alerts(error, notice)
    return _page("Access requests", f"""
<h1>Time-bound access</h1>
{alert}
<form method="post" action="/access" class="card" aria-label="request access">
  <input type="hidden" name="csrf" value="{escape(session.csrf)}">
  <label for="role">Role</label><input id="role" name="role" required placeholder="developer">
  <label for="a-cluster">Cluster</label><select id="a-cluster" name="cluster">{options}</select>
  <label for="a-namespace">Namespace (glob)</label><input id="a-namespace" name="namespace" value="*">
  <label for="minutes">For (minutes)</label><input id="minutes" name="minutes" type="number" min="1" max="1440" value="60">
  <label for="reason">Reason</label><input id="reason" name="reason" required placeholder="INC-1234: restart the ledger">
  <button type="submit">Request access</button>
</form>
<h2>Requests you made or may decide</h2>
<table><thead><tr><th scope="col">ID</th><th scope="col">Status</th><th scope="col">User</th><th scope="col">Role</th>
<th scope="col">Where</th><th scope="col">For</th><th scope="col">Reason</th><th scope="col">Decided by</th><th scope="col"></th></tr></thead>
<tbody>{rows or '<tr><td colspan="9">None.</td></tr>'}</tbody></table>""", session)


def _reasons(t: dict[str, object]) -> str:
    reasons = t.get("reasons")
    return "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else ""


def _radius(t: dict[str, object]) -> str:
    """What the change takes with it: its summary, and each line on demand."""
    radius = t.get("blastRadius")
    if not isinstance(radius, dict):
        return ""
    lines = "".join(f"<li>{escape(line)}</li>" for line in radius_lines(radius))
    return f'<details><summary>{escape(str(radius.get("summary", "")))}</summary><ul>{lines}</ul></details>'


def approvals(session: WebSession, items: list[dict[str, object]], error: str = "", notice: str = "") -> str:
    def what(t: dict[str, object]) -> str:
        request = t.get("request") or {}
        assert isinstance(request, dict)
        query = f"?{request['query']}" if request.get("query") else ""
        return f'<code>{escape(str(request.get("method", "")))} {escape(str(request.get("path", "")))}{escape(query)}</code>'

    def actions(t: dict[str, object]) -> str:
        return _decision_buttons(session, "/approvals", t)
    rows = "".join(
        f'<tr><td><code>{escape(str(t["id"]))}</code></td><td>{escape(str(t["status"]))}</td><td>{escape(str(t["user"]))}</td>'
        f'<td>{escape(str(t["cluster"]))}</td><td>{what(t)}</td>'
        f'<td>{escape(_reasons(t))}</td><td>{_radius(t)}</td>'
        f'<td>{escape(str(t.get("decidedBy") or ""))}</td><td>{actions(t)}</td></tr>' for t in items)
    alert = _alerts(error, notice)
    return _page("Approvals", f"""
<h1>Approvals</h1>
{alert}
<p class="hint">Risky changes, from kubectl or a webshell terminal, wait here for a second person. Nobody approves their own.</p>
<table><thead><tr><th scope="col">Ticket</th><th scope="col">Status</th><th scope="col">Requested by</th>
<th scope="col">Cluster</th><th scope="col">Exactly this</th><th scope="col">Why</th><th scope="col">What it takes</th>
<th scope="col">Decided by</th><th scope="col"></th></tr></thead>
<tbody>{rows or '<tr><td colspan="9">Nothing waits for a decision.</td></tr>'}</tbody></table>""", session)
