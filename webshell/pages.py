"""The webshell's pages: plain HTML, escaped, one stylesheet, no framework, keyboard-first."""

from __future__ import annotations

from html import escape

from .sessions import WebSession


def _page(title: str, body: str, session: WebSession | None = None, scripts: tuple[str, ...] = (),
          styles: tuple[str, ...] = ()) -> str:
    nav = ""
    if session is not None:
        nav = (f'<nav aria-label="main"><a href="/">Clusters</a>'
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


def login(error: str, csrf: str, sso: bool) -> str:
    alert = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
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
