"""The webshell in a real browser: Debian's chromium driven by Playwright. Sign in (a token, or the
OIDC provider's own page), open a terminal, run kubectl, replay the recording, keep two users
apart. Each page is photographed: into docs/webshell/ when KUBEGATE_SCREENSHOTS=1 (how the
README's pictures are made), else into the test's temporary directory."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, kubectl_binary, start_gateway
from tests.webshell.conftest import STARTER_RULES
from tests.oidc import provider as oidc_provider

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run the tests through ./dev test (it installs Debian's chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return REPO / "docs" / "webshell" if os.environ.get("KUBEGATE_SCREENSHOTS") == "1" else tmp_path


@pytest.fixture(scope="module")
def gw(idp: oidc_provider.Provider, upstream: harness.RunningEmulator,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    emu = upstream.emulator
    kinds = {p: emu.registry.lookup("", "v1", p) for p in ("namespaces", "pods")}
    def seed() -> None:
        emu.store.create(kinds["namespaces"], "", {"metadata": {"name": "browser-shop"}})
        for name in ("web-7d9c0x", "web-7d9c1x", "cart-5f2a0x"):
            emu.store.create(kinds["pods"], "browser-shop", {"metadata": {"name": name, "labels": {"app": "web"}},
                                                            "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    upstream.call(seed)
    handle = start_gateway(tmp_path_factory.mktemp("browser-gw"), upstream,
                           oidc=[{"issuer": idp.issuer, "audiences": ["kubegate-webshell"],
                                  "jwks_ca_file": str(idp.ca_file), "username_claim": "email"}],
                           webshell={"enabled": True, "port": 0, "kubectl": kubectl_binary(),
                                     "oidc_issuer": idp.issuer, "oidc_client_id": "kubegate-webshell"},
                           gate_files={"rules.yaml": STARTER_RULES.read_text()})
    yield handle
    handle.stop()


def _page(browser: Browser, width: int = 1280, height: int = 800) -> Page:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": width, "height": height})
    return context.new_page()


def _token_login(page: Page, gw: GatewayHandle, user: str, groups: tuple[str, ...]) -> None:
    """Keyboard only: Tab to the token field, type it, Enter on the button."""
    page.goto(f"{gw.webshell_url}/login")
    token = page.locator("#token")
    for _ in range(8):  # the brand link, the single sign-on link, then the token field
        page.keyboard.press("Tab")
        if page.locator("#token:focus").count():
            break
    expect(token).to_be_focused()
    page.keyboard.type(gw.token(user, groups))
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert page.locator(".error").count() == 0, page.locator(".error").inner_text()
    expect(page.locator("h1")).to_have_text("Open a terminal")


def _terminal(browser: Browser, gw: GatewayHandle, user: str, groups: tuple[str, ...]) -> Page:
    """USER signed in, in a terminal on the browser-shop namespace, at its prompt."""
    page = _page(browser)
    _token_login(page, gw, user, groups)
    page.goto(f"{gw.webshell_url}/terminal?cluster=emu&namespace=browser-shop")
    expect(page.locator(".xterm-rows")).to_contain_text("$", timeout=30_000)
    return page


def _terminal_text(page: Page) -> str:
    return str(page.locator(".xterm-rows").inner_text())


def _type(page: Page, line: str, wait_for: str) -> None:
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.type(line)
    page.keyboard.press("Enter")
    expect(page.locator(".xterm-rows")).to_contain_text(wait_for, timeout=30_000)


def test_sign_in_open_a_terminal_and_run_kubectl(browser: Browser, gw: GatewayHandle, shots: Path) -> None:
    page = _page(browser)
    page.goto(f"{gw.webshell_url}/login")
    page.screenshot(path=shots / "login.png")
    _token_login(page, gw, "ada", ("kubegate:cluster-admins",))
    page.screenshot(path=shots / "clusters.png")
    page.fill("#namespace", "browser-shop")
    page.click("button[type=submit]:has-text('Open terminal')")
    expect(page.locator("#status")).to_contain_text("Connected to emu")
    expect(page.locator(".xterm-rows")).to_contain_text("$", timeout=30_000)
    gw.upstream.clear_requests()
    _type(page, "kubectl get pods", "web-7d9c1x")
    text = _terminal_text(page)
    assert "cart-5f2a0x" in text and "web-7d9c0x" in text
    _type(page, "bash", "refused")
    assert "'bash' is not available" in _terminal_text(page)
    page.screenshot(path=shots / "terminal.png")
    seen = [r.user for r in gw.upstream.requests if r.path.endswith("/pods")]
    assert seen and {u.username for u in seen} == {"ada"} and all(u.extra.get("kubegate.io/session") for u in seen)
    page.context.close()


def test_single_sign_on_in_the_browser(browser: Browser, gw: GatewayHandle, shots: Path) -> None:
    page = _page(browser)
    page.goto(f"{gw.webshell_url}/login")
    page.click("text=Sign in with single sign-on")
    expect(page.locator("h1")).to_have_text("Authorize Client")  # the provider's own page
    page.fill("#subject-input", "alice")
    page.click("button:has-text('Authorize')")
    expect(page.locator("h1")).to_have_text("Open a terminal")
    expect(page.locator(".who")).to_have_text("alice@example.com")
    # Her team (team-shop, from the provider's groups claim) reads everywhere: kubectl shows the pods.
    page.fill("#namespace", "browser-shop")
    page.click("button[type=submit]:has-text('Open terminal')")
    expect(page.locator(".xterm-rows")).to_contain_text("$", timeout=30_000)
    gw.upstream.clear_requests()
    _type(page, "kubectl get pods", "web-7d9c1x")
    seen = [r.user for r in gw.upstream.requests if r.path.endswith("/pods")]
    assert seen and {u.username for u in seen} == {"alice@example.com"}
    assert all("team-shop" in u.groups and u.extra.get("kubegate.io/session") for u in seen)
    page.context.close()


def test_replay_and_two_users_kept_apart(browser: Browser, gw: GatewayHandle, shots: Path) -> None:
    bob = _terminal(browser, gw, "bob", ("kubegate:viewers",))
    _type(bob, "kubectl get pods -o name", "pod/web-7d9c0x")
    bob.goto(f"{gw.webshell_url}/sessions")  # leaving the page ends the terminal
    rows = bob.locator("tbody tr")
    expect(rows.first).to_contain_text("bob")
    assert "ada" not in bob.locator("tbody").inner_text()  # ada's session (the first test) is not bob's to see
    bob.screenshot(path=shots / "sessions.png")
    mine = bob.locator("tbody tr", has_text="bob").first.locator("a").get_attribute("href")
    assert mine and mine.startswith("/sessions/")

    carol = _page(browser, 390, 844)  # a narrow window
    _token_login(carol, gw, "carol", ("kubegate:viewers",))
    carol.screenshot(path=shots / "clusters-narrow.png")
    for path in (mine, mine.replace("/sessions/", "/recordings/") + ".cast"):
        answer = carol.goto(f"{gw.webshell_url}{path}")
        assert answer is not None and answer.status == 404  # someone else's: as if it did not exist

    auditor = _page(browser)
    _token_login(auditor, gw, "audrey", ("kubegate:auditors",))
    auditor.goto(f"{gw.webshell_url}/sessions")
    body = auditor.locator("tbody").inner_text()
    assert "bob" in body and "ada" in body
    auditor.goto(f"{gw.webshell_url}{mine}")
    expect(auditor.locator("table")).to_contain_text("/api/v1/namespaces/browser-shop/pods")
    auditor.locator(".ap-player").click()  # play the recording
    expect(auditor.locator(".ap-term")).to_contain_text("pod/web-7d9c0x", timeout=30_000)
    assert "kubectl get pods -o name" in auditor.locator(".ap-term").inner_text()  # what was typed, too
    auditor.screenshot(path=shots / "replay.png")
    for p in (bob, carol, auditor):
        p.context.close()


def test_access_requests_page(browser: Browser, gw: GatewayHandle, shots: Path) -> None:
    dan = _page(browser)
    _token_login(dan, gw, "dan", ("kubegate:viewers",))
    dan.goto(f"{gw.webshell_url}/access")
    dan.fill("#role", "developer")
    dan.fill("#a-namespace", "browser-shop")
    dan.fill("#minutes", "30")
    dan.fill("#reason", "INC-7: restart the cart")
    dan.click("button:has-text('Request access')")
    expect(dan.locator(".notice")).to_contain_text("requested:")
    request_id = re.search(r"requested: (\S+);", dan.locator(".notice").inner_text())
    assert request_id
    expect(dan.locator("form.inline")).to_have_count(0)  # nobody decides their own

    sam = _page(browser)
    _token_login(sam, gw, "sam", ("kubegate:sre",))
    sam.goto(f"{gw.webshell_url}/access")
    row = sam.locator("tr", has_text=request_id.group(1))
    sam.screenshot(path=shots / "access.png")
    row.locator("button:has-text('Approve')").click()
    expect(sam.locator(".notice")).to_contain_text(f"{request_id.group(1)} approved")
    expect(sam.locator("tr", has_text=request_id.group(1))).to_contain_text("sam")
    for p in (dan, sam):
        p.context.close()


def test_a_second_person_approves_in_another_browser(browser: Browser, gw: GatewayHandle, shots: Path) -> None:
    dev = _terminal(browser, gw, "devon", ("kubegate:cluster-admins",))
    _type(dev, "kubectl delete pod cart-5f2a0x", "waiting for approval")
    ticket = re.search(r"ticket (\w+)", dev.locator(".xterm-rows").inner_text())
    assert ticket

    sam = _page(browser)
    _token_login(sam, gw, "sam", ("kubegate:sre",))
    sam.goto(f"{gw.webshell_url}/approvals")
    row = sam.locator("tr", has_text=ticket.group(1))
    expect(row).to_contain_text("DELETE /api/v1/namespaces/browser-shop/pods/cart-5f2a0x")
    sam.screenshot(path=shots / "approvals.png")
    row.locator("button:has-text('Approve')").click()
    expect(sam.locator(".notice")).to_contain_text(f"{ticket.group(1)} approved")

    expect(dev.locator(".xterm-rows")).to_contain_text('pod "cart-5f2a0x" deleted', timeout=30_000)
    assert "approved by sam" in dev.locator(".xterm-rows").inner_text()
    dev.screenshot(path=shots / "terminal-approved.png")
    for p in (dev, sam):
        p.context.close()
