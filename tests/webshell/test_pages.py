"""The webshell's pages as a browser receives them: every value a user, the gateway or the audit log
supplies is escaped (names, reasons, paths and queries are attacker-chosen), and the chrome around
each signed-in page shows the brakes and the waiting count."""

from __future__ import annotations

import html.parser
import time
from pathlib import Path

import pytest

from kubegate.webshell import pages
from kubegate.webshell.history import ApiEvent, TerminalRecord
from kubegate.webshell.sessions import WebSession

HOSTILE = '<script>alert(1)</script>"\'&'


class _Elements(html.parser.HTMLParser):
    """The element names and attribute values a browser would build from a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs


def _parsed(page: str) -> _Elements:
    elements = _Elements()
    elements.feed(page)
    return elements


def _session(tmp_path: Path) -> WebSession:
    return WebSession(id="s1", user=HOSTILE, groups=(), token="t", token_session="g1", expires=time.time() + 60,
                      csrf='c"sr<f', directory=tmp_path)


def _pages(tmp_path: Path) -> dict[str, str]:
    session = _session(tmp_path)
    record = TerminalRecord(id="t1", session="g1", user=HOSTILE, cluster=HOSTILE, namespace=HOSTILE,
                            started="2026-12-05T10:00:00Z", recording="r", ended="2026-12-05T10:05:00Z", why=HOSTILE,
                            sha256="ab" * 32)
    event = ApiEvent(time="2026-12-05T10:01:00Z", verb="delete", uri=f"/api/v1/pods?x={HOSTILE}", code=403,
                     decision=HOSTILE)
    item = {"id": "a1", "status": "pending", "user": "someone", "role": HOSTILE, "cluster": HOSTILE,
            "namespace": HOSTILE, "durationSeconds": 3600, "reason": HOSTILE, "decidedBy": None}
    ticket = {"id": "k1", "status": "pending", "user": "someone", "cluster": HOSTILE, "reasons": [HOSTILE, "two"],
              "request": {"method": "DELETE", "path": f"/api/v1/{HOSTILE}", "query": HOSTILE},
              "blastRadius": {"change": HOSTILE, "complete": True, "summary": HOSTILE,
                              "takes": [{"kind": "Pod", "count": 3, "names": [HOSTILE]}]}}
    chrome = pages.Chrome(brakes=[{"scope": HOSTILE, "reason": HOSTILE, "by": HOSTILE}], waiting=2)
    return {
        "login": pages.login(HOSTILE, 'c"sr<f', sso=True),
        "home": pages.home(session, (HOSTILE, "b"), HOSTILE, chrome),
        "terminal": pages.terminal(session, HOSTILE, HOSTILE, chrome),
        "message": pages.message(HOSTILE, HOSTILE, session, chrome),
        "sessions": pages.sessions(session, [record], set(), True, {"user": HOSTILE}, chrome),
        "replay": pages.replay(session, record, [event], False, chrome),
        "watch": pages.replay(session, record, [event], True, chrome),
        "access": pages.access(session, [item], (HOSTILE,), HOSTILE, HOSTILE, chrome),
        "approvals": pages.approvals(session, [ticket], HOSTILE, HOSTILE, chrome),
    }


@pytest.mark.parametrize("name", ["login", "home", "terminal", "message", "sessions", "replay", "watch", "access",
                                  "approvals"])
def test_no_value_becomes_markup(tmp_path: Path, name: str) -> None:
    page = _pages(tmp_path)[name]
    elements = _parsed(page)
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text
    # Only the page's own scripts load, and no attribute value was broken out of.
    scripts = [v for k, v in elements.attributes if k == "src"]
    assert all(s and s.startswith("/static/") for s in scripts), scripts
    assert not [k for k, _ in elements.attributes if k.startswith("on") or k == "alert(1)"]


def test_signed_in_pages_carry_the_brake_banner_and_the_waiting_count(tmp_path: Path) -> None:
    for name, page in _pages(tmp_path).items():
        if name == "login":
            assert 'aria-label="emergency brake"' not in page and "/logout" not in page
            continue
        assert 'aria-label="emergency brake"' in page, name
        assert '<a href="/approvals">Approvals <span class="badge" aria-label="2 waiting for you">2</span></a>' in page
        assert 'name="csrf" value="c&#34;sr&lt;f"' in page  # the logout form's token, intact once unescaped


def test_a_page_without_brakes_or_waiting_tickets_shows_neither(tmp_path: Path) -> None:
    page = pages.home(_session(tmp_path), ("a",), "a")
    assert "emergency brake" not in page and "badge" not in page
    assert '<a href="/approvals">Approvals</a>' in page


def test_a_ticket_shows_exactly_its_request_and_what_it_takes(tmp_path: Path) -> None:
    ticket = {"id": "k1", "status": "pending", "user": "someone", "cluster": "prod",
              "reasons": ["rule webshell-delete"],
              "request": {"method": "DELETE", "path": "/apis/apps/v1/namespaces/shop/deployments/web",
                          "query": "propagationPolicy=Foreground"},
              "blastRadius": {"change": "delete Deployment shop/web", "complete": False,
                              "summary": "1 Deployment, 2 ReplicaSets, 6 Pods",
                              "takes": [{"kind": "Pod", "count": 6, "names": ["web-a", "web-b"]}]}}
    page = pages.approvals(_session(tmp_path), [ticket])
    assert "<code>DELETE /apis/apps/v1/namespaces/shop/deployments/web?propagationPolicy=Foreground</code>" in page
    assert "<summary>1 Deployment, 2 ReplicaSets, 6 Pods</summary>" in page
    assert "<li>delete Deployment shop/web  (INCOMPLETE: counts are lower bounds)</li>" in page
    assert "<li>takes 6 Pod: web-a, web-b and 4 more</li>" in page
    assert "<td>rule webshell-delete</td>" in page
    assert 'action="/approvals/k1/approve"' in page and 'action="/approvals/k1/deny"' in page
    own = pages.approvals(_session(tmp_path), [ticket | {"user": HOSTILE}])  # the signed-in user's own ticket
    assert "/approve" not in own
