"""The audit center sink: spooled on disk, delivered in order once the center is back, after a
gateway restart too, never twice; a full spool refuses changes, never loses their events."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp import web

from kubegate import pki
from kubegate.emulator import harness
from tests.conftest import GatewayHandle, start_gateway, wait_until
from tests.gateway.conftest import send


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AuditCenter:
    """An HTTPS endpoint taking audit.k8s.io/v1 EventLists, as kube-apiserver's webhook backend posts them."""

    def __init__(self, directory: Path, port: int) -> None:
        ca = pki.make_ca("audit-center-ca")
        ca.write(directory / "center-ca.crt", directory / "center-ca.key")
        pki.make_leaf(ca, "center", ["127.0.0.1"]).write(directory / "center.crt", directory / "center.key")
        self.directory, self.port, self.ca_file = directory, port, directory / "center-ca.crt"
        self.events: list[dict[str, Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        ready = threading.Event()

        async def take(request: web.Request) -> web.Response:
            body = await request.json()
            assert body["kind"] == "EventList" and body["apiVersion"] == "audit.k8s.io/v1"
            self.events += body["items"]
            return web.json_response({}, status=200)

        async def serve() -> None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.directory / "center.crt", self.directory / "center.key")
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/audit", take)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ctx).start()
            ready.set()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        if self.loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        self.loop = None


@pytest.fixture
def center(tmp_path: Path) -> Iterator[AuditCenter]:
    c = AuditCenter(tmp_path, free_port())
    yield c
    c.stop()


def gateway(state: Path, upstream: harness.RunningEmulator, center: AuditCenter, **webhook: Any) -> GatewayHandle:
    return start_gateway(state, upstream, audit={"webhook": {
        "url": f"https://127.0.0.1:{center.port}/audit", "ca_file": str(center.ca_file), "batch_seconds": 0.2,
        **webhook}})


def wait_for(predicate: Any, timeout: float = 30) -> None:
    wait_until(predicate, timeout, "the audit center did not get the events")


def test_drill_center_down_gateway_restarted_then_everything_arrives_once_in_order(
        tmp_path: Path, center: AuditCenter) -> None:
    upstream = harness.start(tmp_path / "emulator")
    state = tmp_path / "gw"
    try:
        sent: list[str] = []
        gw = gateway(state, upstream, center)
        for i in range(25):
            resp = send(gw.port, gw.ca_file, "GET", f"/api/v1/namespaces?limit={i + 1}",
                        headers={"Authorization": f"Bearer {gw.token('ada')}"})
            sent.append(resp.headers["audit-id"])
        gw.stop()  # the center never answered: every event is in the spool
        gw = gateway(state, upstream, center)
        for i in range(25, 40):
            resp = send(gw.port, gw.ca_file, "GET", f"/api/v1/namespaces?limit={i + 1}",
                        headers={"Authorization": f"Bearer {gw.token('ada')}"})
            sent.append(resp.headers["audit-id"])
        center.start()
        wanted = set(sent)
        wait_for(lambda: wanted <= {e["auditID"] for e in center.events})
        delivered = [e["auditID"] for e in center.events]
        assert len(delivered) == len(set(delivered))  # never twice
        assert [a for a in delivered if a in wanted] == sent  # in order, across the restart
        gw.stop()
    finally:
        upstream.stop()


def test_a_full_spool_refuses_changes_and_reads_go_on(tmp_path: Path, center: AuditCenter) -> None:
    upstream = harness.start(tmp_path / "emulator")
    gw = gateway(tmp_path / "gw", upstream, center, max_spool_bytes=20000)
    try:
        token = gw.token("ada")
        for _ in range(60):  # about 600 bytes an event: the spool fills
            assert send(gw.port, gw.ca_file, "GET", "/api/v1/namespaces",
                        headers={"Authorization": f"Bearer {token}"}).status == 200
        change = send(gw.port, gw.ca_file, "POST", "/api/v1/namespaces", body=json.dumps(
            {"metadata": {"name": "not-now"}}).encode(), headers={"Authorization": f"Bearer {token}",
                                                                "Content-Type": "application/json"})
        assert change.status == 503 and "audit center" in change.json()["message"]
        assert [r for r in upstream.requests if r.method == "POST" and r.path == "/api/v1/namespaces"] == []
        center.start()  # the center takes the spool, and changes are served again
        wait_for(lambda: send(gw.port, gw.ca_file, "POST", "/api/v1/namespaces", body=json.dumps(
            {"metadata": {"name": "now"}}).encode(), headers={"Authorization": f"Bearer {token}",
                                                            "Content-Type": "application/json"}).status == 201)
    finally:
        gw.stop()
        upstream.stop()
