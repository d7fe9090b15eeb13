"""Approver notifications: a ticket's steps reach a generic webhook (kubegate's JSON body) and a
Slack-compatible incoming webhook, delivered in the background (the request is answered while the
webhook still fails) and retried until taken."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from aiohttp import web

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, start_gateway, write_gateway_config
from tests.served_app import ServedApp

RULES = """
rules:
  - id: configmap-deletes
    description: configmaps go with a second person
    outcome: require-approval
    match: {resources: [configmaps], verbs: [delete]}
"""


class Receiver:
    """Two endpoints on loopback: /hook fails its first FAILURES posts (500), /slack takes everything."""

    def __init__(self, failures: int = 2) -> None:
        self.posts: dict[str, list[tuple[float, Any]]] = {"hook": [], "slack": []}
        self.failures = failures

        async def take(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            data = await request.json()
            if name == "hook" and self.failures > 0:
                self.failures -= 1
                return web.Response(status=500)
            self.posts[name].append((time.monotonic(), data))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/{name}", take)
        self.served = ServedApp(app)
        self.port = self.served.port

    def wait_for(self, name: str, event: str, bound: float = 30) -> tuple[float, Any]:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            for at, data in self.posts[name]:
                if data.get("event") == event or (name == "slack" and event in data.get("text", "")):
                    return at, data
            time.sleep(0.05)
        raise AssertionError(f"no {event} at /{name}: {self.posts[name]}")

    def stop(self) -> None:
        self.served.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, upstream: harness.RunningEmulator) -> Iterator[tuple[GatewayHandle, Receiver, Path]]:
    tmp = tmp_path_factory.mktemp("notify")
    receiver = Receiver()
    targets = [{"name": "hook", "url": f"http://127.0.0.1:{receiver.port}/hook"},
               {"name": "chat", "kind": "slack", "url": f"http://127.0.0.1:{receiver.port}/slack",
                "events": ["requested"]}]
    gw = start_gateway(tmp / "gw", upstream, gate_files={"rules.yaml": RULES}, notifications=targets)
    try:
        yield gw, receiver, tmp
    finally:
        gw.stop()
        receiver.stop()


def test_approvers_are_told_a_ticket_waits_and_how_it_ended(env: tuple[GatewayHandle, Receiver, Path]) -> None:
    gw, receiver, tmp = env
    ada = {"Authorization": f"Bearer {gw.token('ada')}"}
    requests.post(f"{gw.url}/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "told"}}, headers=ada,
                  verify=str(gw.ca_file), timeout=10)
    held = requests.delete(f"{gw.url}/api/v1/namespaces/default/configmaps/told", headers=ada,
                           verify=str(gw.ca_file), timeout=10)
    answered = time.monotonic()
    assert held.status_code == 403
    ticket = held.json()["message"].split("Approval ticket ")[1].split()[0]

    at, sent = receiver.wait_for("hook", "requested")
    assert at > answered  # the hook failed twice first: the request did not wait for it
    assert sent["apiVersion"] == "kubegate.io/v1" and sent["kind"] == "ApprovalNotification"
    assert sent["ticket"]["id"] == ticket and sent["ticket"]["user"] == "ada" and sent["actor"] == "ada"
    assert sent["ticket"]["request"] == "DELETE /api/v1/namespaces/default/configmaps/told"
    assert sent["ticket"]["reasons"][0].startswith("rule configmap-deletes")
    assert sent["ticket"]["blastRadius"] == "takes with it: 1 ConfigMap"
    assert sent["approve"] == f"kubegate approvals approve {ticket}"
    _, chat = receiver.wait_for("slack", "asks for approval")
    assert "*ada* asks for approval: `delete configmaps default/told`" in chat["text"]
    assert f"kubegate approvals approve {ticket}" in chat["text"]

    kubeconfig = gw.kubeconfig(tmp / "sam", "sam", ("kubegate:sre",))
    subprocess.run([sys.executable, "-m", "kubegate", "approvals", "approve", ticket, "--kubeconfig", str(kubeconfig)],
                   check=True, capture_output=True, timeout=60)
    _, decided = receiver.wait_for("hook", "approved")
    assert decided["actor"] == "sam" and decided["ticket"]["decidedBy"] == "sam"
    assert not [d for _, d in receiver.posts["slack"] if "approved by" in d["text"]]  # chat wants requests only
    with_metrics = requests.get(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=10).text
    assert 'kubegate_notifications_total{result="sent",target="hook"}' in with_metrics


def test_a_notification_target_is_checked_at_start(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    config = write_gateway_config(tmp_path, [], notifications=[{"name": "x", "url": "http://chat.example/hook",
                                                                "events": ["asked"]}])
    out = subprocess.run([sys.executable, "-m", "kubegate", "serve", "-c", str(config)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "notifications[0].url: must be an https:// URL (http:// only on a loopback address)" in out.stderr
    assert "notifications[0].events: each one of requested" in out.stderr and "Traceback" not in out.stderr
