"""Where no sandbox can be made, terminals are refused (and doctor and /readyz say so loudly), unless
`webshell.sandbox: none` is set; the webshell's pages carry their security headers on errors too; and
one terminal's huge paste does not hold up anyone else's request."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from kubegate.emulator import harness
from tests.conftest import kubectl_binary, start_gateway, write_gateway_config
from tests.test_doctor import _doctor_lines, emulator_cluster
from tests.webshell.conftest import WebshellHandle

# kubectl is named by its path, Go (the tests' apiserver front) by its own directory; bwrap is nowhere.
NO_BWRAP = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                   os.path.dirname(os.path.realpath(shutil.which("go") or "go"))])}


def _doctor(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", "doctor", "-c", str(config)], capture_output=True,
                          text=True, timeout=90, env=env)


@pytest.mark.parametrize(("sandbox", "env", "code", "expected"), [
    pytest.param("bwrap", None, 0, "[  ok] webshell.sandbox: bwrap: each terminal command runs in a sandbox", id="bwrap"),
    pytest.param("bwrap", NO_BWRAP, 1, "webshell.sandbox: terminals are OFF: bubblewrap (bwrap) is not installed",
                 id="no-bwrap"),
    pytest.param("none", NO_BWRAP, 0, "webshell.sandbox: NONE: terminals' kubectl runs as the webshell's own user",
                 id="none"),
])
def test_doctor_says_whether_terminals_can_be_contained(tmp_path: Path, upstream: harness.RunningEmulator,
                                                        sandbox: str, env: dict[str, str] | None, code: int,
                                                        expected: str) -> None:
    config = write_gateway_config(tmp_path / "gw", [emulator_cluster(upstream)],
                                  webshell={"enabled": True, "port": 0, "kubectl": kubectl_binary(), "sandbox": sandbox})
    out = _doctor(config, env or dict(os.environ))
    assert out.returncode == code, out.stdout + out.stderr
    assert expected in _doctor_lines(out)["webshell.sandbox"], out.stdout


def test_without_a_sandbox_terminals_are_refused_and_readyz_says_so(tmp_path: Path,
                                                                     upstream: harness.RunningEmulator) -> None:
    saved = dict(os.environ)
    os.environ.update(NO_BWRAP)
    try:
        gw = start_gateway(tmp_path / "gw", upstream, webshell={"enabled": True, "port": 0, "kubectl": kubectl_binary()})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    handle = WebshellHandle(gw, gw.webshell_url)
    try:
        shown = asyncio.run(_everything_shown(handle, handle.login("ada").cookie()))
        assert "kubegate: terminals are off: no sandbox can be made for them here" in shown
        assert "bubblewrap (bwrap) is not installed" in shown and "$ " not in shown
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/readyz?verbose", timeout=10) as r:
            ready = r.read().decode()
        assert "[-]webshell sandbox: terminals are OFF: bubblewrap (bwrap) is not installed" in ready
        refused = [e for e in gw.audit_events() if e["annotations"].get("kubegate.io/webshell-event") == "terminal-refused"]
        assert refused and refused[0]["user"]["username"] == "ada"
    finally:
        handle.close()
        gw.stop()


async def _everything_shown(handle: WebshellHandle, cookie: str) -> str:
    ctx = ssl.create_default_context(cafile=str(handle.gw.ca_file))
    url = handle.url.replace("https://", "wss://") + "/ws/terminal?cluster=emu&namespace=default"
    shown = ""
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, ssl=ctx, headers={"Origin": handle.url, "Cookie": cookie}) as ws:
            async for msg in ws:
                shown += msg.data.decode() if msg.type == aiohttp.WSMsgType.BINARY else ""
    await asyncio.sleep(0.25)
    return shown


HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control",
           "Strict-Transport-Security")


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no/such/page", 404), ("GET", "/recordings/x.cast", 401), ("GET", "/ws/terminal", 403),
    ("POST", "/approvals/x/approve", 303), ("GET", "/", 303), ("GET", "/login", 200),
])
def test_every_answer_carries_the_security_headers(webshell: WebshellHandle, method: str, path: str, status: int) -> None:
    answer = requests.request(method, webshell.url + path, verify=str(webshell.gw.ca_file), timeout=10,
                              allow_redirects=False)
    assert answer.status_code == status
    missing = [h for h in HEADERS if h not in answer.headers]
    assert not missing, (path, missing)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_a_huge_paste_holds_up_nobody_else(webshell: WebshellHandle) -> None:
    """1 MiB pasted into one terminal (what the shell cannot take at once waits, bounded): meanwhile
    another user's API request and page load complete, before the paste has even been echoed back."""
    paster = webshell.login("paula")
    other_token = webshell.gw.token("otto")
    chunk, chunks = "x" * 60_000, 17
    done: dict[str, Any] = {}

    def others() -> None:
        api = requests.get(f"{webshell.gw.url}/api/v1/namespaces/default/configmaps", timeout=30,
                           headers={"Authorization": f"Bearer {other_token}"}, verify=str(webshell.gw.ca_file))
        page = requests.get(f"{webshell.url}/login", timeout=30, verify=str(webshell.gw.ca_file))
        done["answers"] = (api.status_code, page.status_code)
        done["echoed"] = echoed[0]

    echoed = [0]

    async def scenario() -> None:
        ctx = ssl.create_default_context(cafile=str(webshell.gw.ca_file))
        url = webshell.url.replace("https://", "wss://") + "/ws/terminal?cluster=emu&namespace=default"
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url, ssl=ctx, headers={"Origin": webshell.url, "Cookie": paster.cookie()}) as ws:
                while b"$ " not in (await ws.receive()).data:
                    pass
                for _ in range(chunks):
                    await ws.send_str(json.dumps({"type": "input", "data": chunk}))
                helper = threading.Thread(target=others)
                helper.start()
                deadline = time.monotonic() + 60
                while "answers" not in done and time.monotonic() < deadline:
                    try:
                        msg = await asyncio.wait_for(ws.receive(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        echoed[0] += msg.data.count(b"x")
                helper.join(30)
        await asyncio.sleep(0.25)

    asyncio.run(scenario())
    assert done.get("answers") == (200, 200), done
    assert done["echoed"] < chunk.__len__() * chunks  # the others finished while the paste was still going in
