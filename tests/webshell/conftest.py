"""A gateway with the webshell on, in front of the emulated cluster, and a client that drives the
webshell the way its pages do (a login form, then the terminal's WebSocket)."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, kubectl_binary, start_gateway
from tests.oidc import provider as oidc_provider

STARTER_RULES = Path(__file__).resolve().parents[2] / "policies" / "gates" / "rules.yaml"


@dataclass
class WebshellHandle:
    gw: GatewayHandle
    url: str
    clients: list["Browserless"] = field(default_factory=list)

    def login(self, user: str, groups: tuple[str, ...] = ("kubegate:cluster-admins",)) -> "Browserless":
        client = Browserless(self, requests.Session())
        self.clients.append(client)
        client.login(self.gw.token(user, groups))
        return client

    def close(self) -> None:
        for client in self.clients:
            client.http.close()


@dataclass
class Browserless:
    """The webshell's forms and WebSocket, spoken from Python (the browser tests use chromium)."""

    shell: WebshellHandle
    http: requests.Session
    transcript: str = field(default="")

    @property
    def ca(self) -> str:
        return str(self.shell.gw.ca_file)

    def login(self, token: str) -> requests.Response:
        page = self.http.get(f"{self.shell.url}/login", verify=self.ca, timeout=10)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        answer = self.http.post(f"{self.shell.url}/login", data={"csrf": csrf.group(1), "token": token},
                                verify=self.ca, timeout=20, headers={"Origin": self.shell.url})
        return answer

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    def run(self, lines: list[str], *, cluster: str = "emu", namespace: str = "default",
            settle: float = 1.5, timeout: float = 30) -> str:
        """Open a terminal, type LINES (each after the prompt is back), return everything shown."""
        return asyncio.run(self._run(lines, cluster, namespace, settle, timeout))

    async def _run(self, lines: list[str], cluster: str, namespace: str, settle: float, timeout: float) -> str:
        import aiohttp

        ctx = ssl.create_default_context(cafile=self.ca)
        url = self.shell.url.replace("https://", "wss://") + f"/ws/terminal?cluster={cluster}&namespace={namespace}"
        shown = ""
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, ssl=ctx, headers={"Origin": self.shell.url, "Cookie": self.cookie()}) as ws:
                async def until_prompt(deadline: float) -> str:
                    out = ""
                    while time.monotonic() < deadline:
                        try:
                            msg = await asyncio.wait_for(ws.receive(), max(0.05, min(settle, deadline - time.monotonic())))
                        except asyncio.TimeoutError:
                            if out.rstrip().endswith("$"):
                                return out
                            continue
                        if msg.type != aiohttp.WSMsgType.BINARY:
                            return out
                        out += msg.data.decode("utf-8", "replace")
                        if re.search(r"\$ $", out):
                            return out
                    return out
                shown += await until_prompt(time.monotonic() + timeout)
                for line in lines:
                    await ws.send_str(json.dumps({"type": "input", "data": line + "\r"}))
                    shown += await until_prompt(time.monotonic() + timeout)
                await ws.send_str(json.dumps({"type": "input", "data": "exit\r"}))
                while True:
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        break
                    shown += msg.data.decode("utf-8", "replace")
        await asyncio.sleep(0.25)  # lets the TLS transports close before the loop does (aiohttp's advice)
        self.transcript += shown
        return shown


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[oidc_provider.Provider]:
    """A real OpenID Connect provider over TLS, knowing alice (of team-shop)."""
    provider = oidc_provider.start_tls(tmp_path_factory.mktemp("idp"))
    provider.user("alice", {"email": "alice@example.com", "email_verified": True, "groups": ["team-shop"]})
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def webshell(upstream: harness.RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebshellHandle]:
    state = tmp_path_factory.mktemp("webshell")
    gw = start_gateway(state, upstream, webshell={"enabled": True, "port": 0, "kubectl": kubectl_binary(),
                                                  "idle_seconds": 60},
                       gate_files={"rules.yaml": STARTER_RULES.read_text()})  # the webshell's rules among them
    assert gw.webshell_url.startswith("https://127.0.0.1:"), gw.webshell_url
    handle = WebshellHandle(gw, gw.webshell_url)
    yield handle
    handle.close()
    gw.stop()
