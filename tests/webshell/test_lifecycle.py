"""A webshell session ends by logout or by its idle timeout: its terminals close, saying why, and
its token stops working at the gateway; the session's directory is gone."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest
import requests
import yaml

from kubegate.emulator import harness
from tests.conftest import kubectl_binary, start_gateway
from tests.webshell.conftest import Browserless, WebshellHandle


@pytest.fixture(scope="module")
def short(upstream: harness.RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebshellHandle]:
    state = tmp_path_factory.mktemp("webshell-short")
    gw = start_gateway(state, upstream, webshell={"enabled": True, "port": 0, "kubectl": kubectl_binary(),
                                                  "idle_seconds": 3})
    handle = WebshellHandle(gw, gw.webshell_url)
    yield handle
    handle.close()
    gw.stop()


def _session_token(shell: WebshellHandle) -> tuple[Path, str]:
    """The one live session's directory and token (the test reads what only the server holds)."""
    [directory] = list((shell.gw.settings.state / "webshell" / "sessions").iterdir())
    doc = yaml.safe_load((directory / "kubeconfig").read_text())
    return directory, doc["users"][0]["user"]["token"]


def _gateway_status(shell: WebshellHandle, token: str) -> int:
    return requests.get(f"{shell.gw.url}/api/v1/namespaces/default/configmaps", verify=str(shell.gw.ca_file),
                        headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


async def _terminal_until_closed(client: Browserless, during: "asyncio.Future[None] | None" = None) -> str:
    ctx = ssl.create_default_context(cafile=client.ca)
    url = client.shell.url.replace("https://", "wss://") + "/ws/terminal?cluster=emu&namespace=default"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, ssl=ctx, headers={"Origin": client.shell.url, "Cookie": client.cookie()}) as ws:
            while True:
                msg = await asyncio.wait_for(ws.receive(), 30)
                if msg.type == aiohttp.WSMsgType.BINARY and b"$ " in msg.data and during is not None:
                    during.set_result(None)
                    during = None
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    reason = str(msg.extra or ws.close_code)
                    break
    await asyncio.sleep(0.25)
    return reason


def test_logout_closes_terminals_and_ends_the_token(short: WebshellHandle) -> None:
    client = short.login("ada")
    home = client.http.get(f"{short.url}/", verify=client.ca, timeout=10)
    csrf = re.search(r'name="csrf" value="([^"]+)"', home.text)
    assert csrf and "Open a terminal" in home.text

    async def scenario() -> str:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        terminal = asyncio.create_task(_terminal_until_closed(client, ready))
        await asyncio.wait_for(ready, 30)
        directory, token = _session_token(short)
        assert await asyncio.to_thread(_gateway_status, short, token) == 200
        out = await asyncio.to_thread(lambda: client.http.post(
            f"{short.url}/logout", data={"csrf": csrf.group(1)}, verify=client.ca, timeout=10,
            headers={"Origin": short.url}, allow_redirects=False))
        assert out.status_code == 303 and out.headers["Location"] == "/login"
        reason = await terminal
        assert await asyncio.to_thread(_gateway_status, short, token) == 401
        assert not directory.exists()
        return reason

    assert "logged out" in asyncio.run(scenario())
    again = client.http.get(f"{short.url}/", verify=client.ca, timeout=10, allow_redirects=False)
    assert again.status_code == 303 and again.headers["Location"] == "/login"


def test_an_idle_session_expires(short: WebshellHandle) -> None:
    client = short.login("ada")

    async def scenario() -> str:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        terminal = asyncio.create_task(_terminal_until_closed(client, ready))
        await asyncio.wait_for(ready, 30)
        _, token = _session_token(short)
        reason = await asyncio.wait_for(terminal, 30)  # no keystrokes, no requests: idle for 3 s
        assert await asyncio.to_thread(_gateway_status, short, token) == 401
        return reason

    assert "expired" in asyncio.run(scenario())
    ended = [e for e in short.gw.audit_events() if (e.get("annotations") or {}).get("kubegate.io/webshell-event")
             == "ended"]
    assert ended and ended[-1]["annotations"]["kubegate.io/why"] == "the session expired"


def test_a_logout_without_the_forms_token_is_refused(short: WebshellHandle) -> None:
    client = short.login("ada")
    out = client.http.post(f"{short.url}/logout", data={"csrf": "forged"}, verify=client.ca, timeout=10,
                           headers={"Origin": short.url}, allow_redirects=False)
    assert out.status_code == 403
    assert client.http.get(f"{short.url}/", verify=client.ca, timeout=10).status_code == 200  # still signed in


def test_the_terminal_opens_only_from_the_webshells_origin(short: WebshellHandle) -> None:
    client = short.login("ada")

    async def attempt() -> int:
        ctx = ssl.create_default_context(cafile=client.ca)
        url = short.url.replace("https://", "wss://") + "/ws/terminal?cluster=emu"
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, ssl=ctx, headers={"Origin": "https://evil.example",
                                                                     "Cookie": client.cookie()}):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status
            finally:
                await asyncio.sleep(0.25)

    assert asyncio.run(attempt()) == 403



def test_a_stopping_gateway_ends_its_browser_sessions_quietly(upstream: harness.RunningEmulator, tmp_path: Path) -> None:
    """SIGTERM with people signed in: their sessions end at the gateway while it still listens (a
    logout each, audited), and the log has no error for it."""
    gw = start_gateway(tmp_path / "gw", upstream, webshell={"enabled": True, "port": 0, "kubectl": kubectl_binary()})
    handle = WebshellHandle(gw, gw.webshell_url)
    try:
        for user in ("ann", "ben"):
            handle.login(user)
        sessions = [e["annotations"]["kubegate.io/session-started"] for e in gw.audit_events()
                    if "kubegate.io/session-started" in e["annotations"]]
        assert len(sessions) == 2
    finally:
        handle.close()
        gw.stop()
    assert gw.log_file is not None
    log = gw.log_file.read_text()
    assert "cannot end session" not in log and " ERROR " not in log, log
    ended = {e["annotations"]["kubegate.io/session-ended"] for e in gw.audit_events()
             if "kubegate.io/session-ended" in e["annotations"]}
    assert ended == set(sessions)
