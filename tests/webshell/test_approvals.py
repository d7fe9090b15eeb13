"""A dangerous webshell command waits for a second person — decided by the gateway's rules on what
the request does, after authorization allowed it: approved (with `kubegate approvals`), it runs again
and passes; denied (on the webshell's approvals page), it does not; Ctrl-C withdraws the ticket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import requests

from tests.webshell.conftest import Browserless, WebshellHandle


async def _until(ws: aiohttp.ClientWebSocketResponse, pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        found = re.search(pattern, "".join(seen))
        if found:
            return found
        try:
            msg = await asyncio.wait_for(ws.receive(), 30)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {pattern!r} within 30s: {''.join(seen)!r}") from None
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise AssertionError(f"the terminal closed before {pattern!r}: {''.join(seen)!r}")
        seen.append(msg.data.decode("utf-8", "replace"))


@contextlib.asynccontextmanager
async def _terminal(webshell: WebshellHandle, user: Browserless) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """USER's terminal on the emulated cluster, namespace default."""
    ctx = ssl.create_default_context(cafile=user.ca)
    url = webshell.url.replace("https://", "wss://") + "/ws/terminal?cluster=emu&namespace=default"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, ssl=ctx, headers={"Origin": webshell.url, "Cookie": user.cookie()}) as ws:
            yield ws


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _configmap(webshell: WebshellHandle, name: str) -> None:
    emu = webshell.gw.upstream
    kind = emu.emulator.registry.lookup("", "v1", "configmaps")
    emu.call(lambda: emu.emulator.store.create(kind, "default", {"metadata": {"name": name}, "data": {"k": "v"}}))


def _exists(webshell: WebshellHandle, name: str) -> bool:
    emu = webshell.gw.upstream
    kind = emu.emulator.registry.lookup("", "v1", "configmaps")

    def get() -> bool:
        try:
            emu.emulator.store.get(kind, "default", name)
            return True
        except Exception:  # the store's NotFound
            return False
    return bool(emu.call(get))


def test_an_approved_command_runs_a_denied_one_does_not(webshell: WebshellHandle, tmp_path: Path) -> None:
    for name in ("doomed", "spared", "kept"):
        _configmap(webshell, name)
    dev = webshell.login("dev", ("kubegate:cluster-admins",))
    sam = webshell.login("sam", ("kubegate:sre",))
    sam_kubeconfig = webshell.gw.kubeconfig(tmp_path / "sam.kubeconfig", "sam", ("kubegate:sre",))

    def approvals(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubegate", "approvals", *args, "--kubeconfig", str(sam_kubeconfig)],
                              capture_output=True, text=True, timeout=60)

    async def scenario() -> tuple[str, str]:
        seen: list[str] = []
        async with _terminal(webshell, dev) as ws:
            await _until(ws, r"\$ $", seen)
            await ws.send_str(json.dumps({"type": "input", "data": "kubectl delete configmap doomed\r"}))
            ticket = (await _until(ws, r"waiting for approval — ticket (\w+) \(rule webshell-delete", seen)).group(1)
            assert _exists(webshell, "doomed")  # nothing ran yet
            approved = await asyncio.to_thread(approvals, "approve", ticket)
            assert approved.returncode == 0, approved.stderr
            await _until(ws, r'(?s)approved by sam; running it again.*configmap "doomed" deleted', seen)

            await ws.send_str(json.dumps({"type": "input", "data": "kubectl delete configmap spared\r"}))
            second = (await _until(ws, r"waiting for approval — ticket (?!" + ticket + r")(\w+)", seen)).group(1)
            await asyncio.to_thread(_deny_on_the_page, sam, second)
            await _until(ws, r"denied by sam; not run", seen)

            await ws.send_str(json.dumps({"type": "input", "data": "kubectl delete configmap kept\r"}))
            third = (await _until(ws, r"waiting for approval — ticket (?!" + ticket + "|" + second + r")(\w+)",
                                  seen)).group(1)
            await ws.send_str(json.dumps({"type": "input", "data": "\x03"}))  # Ctrl-C
            await _until(ws, r"gave up waiting; the ticket is withdrawn", seen)
            await _until(ws, r"\$ $", seen)
            await ws.send_str(json.dumps({"type": "input", "data": "exit\r"}))
        await asyncio.sleep(0.25)
        return "".join(seen), third

    transcript, withdrawn = asyncio.run(scenario())
    assert not _exists(webshell, "doomed") and _exists(webshell, "spared") and _exists(webshell, "kept")
    assert "spared\" deleted" not in transcript and "kept\" deleted" not in transcript
    shown = approvals("show", withdrawn)
    assert shown.returncode == 0 and "withdrawn" in shown.stdout, shown.stdout + shown.stderr
    steps = [(e["annotations"].get("kubegate.io/approval-event"), e["user"]["username"]) for e in webshell.gw.audit_events()
             if e["annotations"].get("kubegate.io/approval-event")]
    for step in (("requested", "dev"), ("approved", "sam"), ("denied", "sam"), ("used", "dev"), ("withdrawn", "dev")):
        assert step in steps, steps


def test_nobody_is_asked_to_approve_what_authorization_refuses(webshell: WebshellHandle) -> None:
    """A viewer's delete is refused by authorization: no ticket is opened, nobody is asked."""
    _configmap(webshell, "untouchable")
    viewer = webshell.login("vera", ("kubegate:viewers",))
    shown = viewer.run(["kubectl delete configmap untouchable -n default"])
    answer = shown.split("kubectl delete configmap untouchable -n default", 1)[1]
    assert 'user "vera" may not delete configmaps' in answer and "waiting for approval" not in answer
    assert _exists(webshell, "untouchable")
    assert not [e for e in webshell.gw.audit_events() if e["annotations"].get("kubegate.io/approval-event")
                and e["user"]["username"] == "vera"]


def test_a_scale_to_zero_however_written_waits_for_a_second_person(webshell: WebshellHandle) -> None:
    """The gateway judges the request's effect: `--replicas=00`, `0x0`, `+0`, `--replicas=1
    --replicas=0`, and a patch that sets replicas to 0 all open a ticket; scaling to 2 does not."""
    emu = webshell.gw.upstream
    kind = emu.emulator.registry.lookup("apps", "v1", "deployments")
    emu.call(lambda: emu.emulator.store.create(kind, "default", {
        "metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                                              "template": {"metadata": {"labels": {"app": "web"}},
                                                           "spec": {"containers": [{"name": "w", "image": "web:1"}]}}}}))
    dev = webshell.login("devin", ("kubegate:cluster-admins",))
    lines = ["kubectl scale deployment web --replicas=00", "kubectl scale deployment web --replicas=0x0",
             "kubectl scale deployment web --replicas=+0", "kubectl scale deployment web --replicas=1 --replicas=0",
             "kubectl patch deployment web -p '{\"spec\":{\"replicas\":0}}'", "kubectl scale deployment web --replicas=2"]

    async def scenario() -> str:
        seen: list[str] = []
        async with _terminal(webshell, dev) as ws:
            await _until(ws, r"\$ $", seen)
            for line in lines[:-1]:
                await ws.send_str(json.dumps({"type": "input", "data": line + "\r"}))
                await _until(ws, r"(?s)" + re.escape(line) + r"\r\n.*waiting for approval — ticket \w+ "
                             r"\(rule webshell-scale-to-zero", seen)
                await ws.send_str(json.dumps({"type": "input", "data": "\x03"}))
                await _until(ws, r"(?s)" + re.escape(line) + r"\r\n.*gave up waiting.*\$ $", seen)
            await ws.send_str(json.dumps({"type": "input", "data": lines[-1] + "\r"}))
            await _until(ws, r"deployment.apps/web scaled", seen)
            await ws.send_str(json.dumps({"type": "input", "data": "exit\r"}))
        await asyncio.sleep(0.25)
        return "".join(seen)

    asyncio.run(scenario())
    replicas = emu.call(lambda: emu.emulator.store.get(kind, "default", "web"))["spec"]["replicas"]
    assert replicas == 2


def _deny_on_the_page(approver: Browserless, ticket: str) -> None:
    page = approver.http.get(f"{approver.shell.url}/approvals", verify=approver.ca, timeout=10)
    assert ticket in page.text and "DELETE /api/v1/namespaces/default/configmaps/spared" in page.text
    # What it takes with it, read from the cluster as the requester: the summary, each line on demand.
    assert "<summary>takes with it: 1 ConfigMap</summary>" in page.text
    assert "<li>takes 1 ConfigMap: spared</li>" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    done = approver.http.post(f"{approver.shell.url}/approvals/{ticket}/deny", data={"csrf": csrf.group(1)},
                              verify=approver.ca, timeout=10, headers={"Origin": approver.shell.url})
    assert done.status_code == 200 and f"{ticket} denied" in done.text, done.text


def test_an_auditor_watches_a_live_terminal(webshell: WebshellHandle) -> None:
    user = webshell.login("lena", ("kubegate:cluster-admins",))
    auditor = webshell.login("audrey", ("kubegate:auditors",))
    outsider = webshell.login("olaf", ("kubegate:viewers",))

    async def scenario() -> tuple[str, int]:
        seen: list[str] = []
        watched: list[str] = []
        ctx = ssl.create_default_context(cafile=user.ca)
        base = webshell.url.replace("https://", "wss://")
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{base}/ws/terminal?cluster=emu&namespace=default", ssl=ctx,
                                       headers={"Origin": webshell.url, "Cookie": user.cookie()}) as ws:
                await _until(ws, r"\$ $", seen)
                page = await asyncio.to_thread(auditor.http.get, f"{webshell.url}/sessions", verify=auditor.ca,
                                               timeout=10)
                terminal = re.search(r'<strong>live</strong></td><td>lena</td>.*?href="/sessions/(\w+)"', page.text)
                assert terminal, page.text
                try:
                    async with http.ws_connect(f"{base}/ws/watch/{terminal.group(1)}", ssl=ctx,
                                               headers={"Origin": webshell.url, "Cookie": outsider.cookie()}):
                        refused = 101
                except aiohttp.WSServerHandshakeError as e:
                    refused = e.status
                async with http.ws_connect(f"{base}/ws/watch/{terminal.group(1)}", ssl=ctx,
                                           headers={"Origin": webshell.url, "Cookie": auditor.cookie()}) as watch:
                    await ws.send_str(json.dumps({"type": "input", "data": "kubectl version --client\r"}))
                    await _until(watch, r"Client Version", watched)
                await ws.send_str(json.dumps({"type": "input", "data": "exit\r"}))
        await asyncio.sleep(0.25)
        return "".join(watched), refused

    watched, refused = asyncio.run(scenario())
    assert "kubectl version --client" in watched and refused == 404
    assert [e for e in webshell.gw.audit_events() if e["annotations"].get("kubegate.io/webshell-event") == "watched"
            and e["user"]["username"] == "audrey"]


def test_every_way_to_a_risky_change_waits_for_a_second_person(webshell: WebshellHandle) -> None:
    """Not the command's words but what its requests do: a cordon, a NoExecute taint, an eviction sent
    with `create --raw`, a delete that `apply --prune` makes — each opens a ticket for its rule."""
    emu = webshell.gw.upstream
    kinds = {r: emu.emulator.registry.lookup("", "v1", r) for r in ("nodes", "pods", "configmaps")}
    emu.call(lambda: emu.emulator.store.create(kinds["nodes"], "", {"metadata": {"name": "node-w"}, "spec": {}}))
    emu.call(lambda: emu.emulator.store.create(kinds["pods"], "default", {
        "metadata": {"name": "victim"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    emu.call(lambda: emu.emulator.store.create(kinds["configmaps"], "default", {
        "metadata": {"name": "prunable-old", "labels": {"app": "prunable"},  # applied once: apply --prune's to take
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}, "data": {"k": "v"}}))
    ops = webshell.login("opal", ("kubegate:cluster-admins",))
    cases = [("kubectl cordon node-w", "webshell-unschedulable-node"),
             ("kubectl taint node node-w maintenance=now:NoExecute", "webshell-noexecute-taint"),
             ("kubectl create --raw /api/v1/namespaces/default/pods/victim/eviction -f eviction.json",
              "webshell-eviction"),
             ("kubectl apply -f keep.yaml --prune -l app=prunable --prune-allowlist=core/v1/ConfigMap",
              "webshell-delete")]

    async def scenario() -> str:
        seen: list[str] = []
        async with _terminal(webshell, ops) as ws:
            await _until(ws, r"\$ $", seen)
            files = next(p for p in (webshell.gw.settings.state / "webshell" / "sessions").glob("*/files")
                         if "opal" in _text(p.parent / "kubeconfig"))  # others' sessions may be ending meanwhile
            (files / "eviction.json").write_text(json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                                                             "metadata": {"name": "victim", "namespace": "default"}}))
            (files / "keep.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: prunable-new\n"
                                             "  namespace: default\n  labels: {app: prunable}\ndata: {k: v}\n")
            for line, rule in cases:
                await ws.send_str(json.dumps({"type": "input", "data": line + "\r"}))
                await _until(ws, r"(?s)" + re.escape(line) + r"\r\n.*waiting for approval — ticket \w+ \([^\n]*rule "
                             + rule, seen)
                await ws.send_str(json.dumps({"type": "input", "data": "\x03"}))
                await _until(ws, r"(?s)" + re.escape(line) + r"\r\n.*gave up waiting.*\$ $", seen)
            await ws.send_str(json.dumps({"type": "input", "data": "exit\r"}))
        await asyncio.sleep(0.25)
        return "".join(seen)

    asyncio.run(scenario())
    node = emu.call(lambda: emu.emulator.store.get(kinds["nodes"], "", "node-w"))
    assert not node["spec"].get("unschedulable") and not node["spec"].get("taints")
    assert _exists(webshell, "prunable-old")
    assert emu.call(lambda: emu.emulator.store.get(kinds["pods"], "default", "victim"))


def test_every_page_shows_an_emergency_brake_while_it_is_on(webshell: WebshellHandle) -> None:
    dev = webshell.login("devi", ("team-shop",))
    gw = webshell.gw
    auth = {"Authorization": f"Bearer {gw.token('sam', ('kubegate:sre',))}"}
    before = dev.http.get(f"{webshell.url}/", verify=dev.ca, timeout=10)
    assert 'aria-label="emergency brake"' not in before.text
    pulled = requests.post(f"{gw.url}/kubegate/v1/brakes", json={"namespace": "payments", "reason": "INC-9 <rollback>"},
                           headers=auth, verify=str(gw.ca_file), timeout=10)
    assert pulled.status_code == 201, pulled.text
    try:
        time.sleep(2.1)  # the webshell asks the gateway at most every two seconds
        for page in ("/", "/approvals", "/terminal?cluster=emu&namespace=default"):
            shown = dev.http.get(f"{webshell.url}{page}", verify=dev.ca, timeout=10).text
            assert 'aria-label="emergency brake"' in shown, page
            assert "cluster *, namespace payments</strong>: INC-9 &lt;rollback&gt; (pulled by sam)" in shown  # escaped
    finally:
        admin = {"Authorization": f"Bearer {gw.token('ada', ('kubegate:cluster-admins',))}"}
        requests.delete(f"{gw.url}/kubegate/v1/brakes/{pulled.json()['id']}", headers=admin, verify=str(gw.ca_file),
                        timeout=10)


def test_the_approvals_link_counts_what_waits_for_you(webshell: WebshellHandle) -> None:
    gw = webshell.gw
    login = requests.post(f"{gw.url}/kubegate/v1/sessions", json={"ttlSeconds": 600}, verify=str(gw.ca_file),
                          headers={"Authorization": f"Bearer {gw.token('rita', ('kubegate:cluster-admins',))}"},
                          timeout=10).json()
    auth = {"Authorization": f"Bearer {login['token']}"}  # a terminal's kind of token: its delete needs a ticket
    requests.post(f"{gw.url}/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "counted"}},
                  headers=auth, verify=str(gw.ca_file), timeout=10)
    held = requests.delete(f"{gw.url}/api/v1/namespaces/default/configmaps/counted", headers=auth,
                           verify=str(gw.ca_file), timeout=10)
    assert held.status_code == 403 and "Approval ticket" in held.json()["message"]
    approver = webshell.login("sara", ("kubegate:sre",))
    page = approver.http.get(f"{webshell.url}/", verify=approver.ca, timeout=10).text
    found = re.search(r'<a href="/approvals">Approvals <span class="badge" aria-label="(\d+) waiting for you">', page)
    assert found and int(found.group(1)) >= 1, page
    mine = webshell.login("rita", ("kubegate:cluster-admins",))  # the requester: her own ticket is not hers to decide
    own = mine.http.get(f"{webshell.url}/", verify=mine.ca, timeout=10).text
    badge = re.search(r'aria-label="(\d+) waiting', own)
    assert (int(badge.group(1)) if badge else 0) == int(found.group(1)) - 1
