"""Honest readiness: /readyz fails while no cluster answers the gateway, names a refused gateway
credential, and reports (without failing) a refused policy reload; ?verbose shows each check."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, emulator_cluster, start_gateway


def readyz(gw: GatewayHandle, verbose: bool = True) -> tuple[int, str]:
    url = f"http://127.0.0.1:{gw.metrics_port}/readyz" + ("?verbose" if verbose else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_reachable_cluster_is_ready(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        code, text = readyz(gw)
        assert code == 200 and "[+]clusters ok" in text and "[+]cluster emu ok" in text
        assert text.rstrip().endswith("readyz check passed")
    finally:
        gw.stop()


def test_a_refused_gateway_credential_is_not_ready_and_named(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    wrong = emulator_cluster(upstream, token="not-the-gateways-token")
    gw = start_gateway(tmp_path / "gw", upstream, clusters=[wrong])
    try:
        code, text = readyz(gw)
        assert code == 503
        assert "[-]cluster emu: the gateway's credential was refused" in text
        assert readyz(gw, verbose=False) == (503, "not ready")
        assert "cluster emu does not answer the gateway: the gateway's credential was refused" in \
            (gw.log_file.read_text() if gw.log_file else "")
    finally:
        gw.stop()


def test_a_refused_reload_is_reported_while_the_last_good_policy_serves(tmp_path: Path,
                                                                         upstream: harness.RunningEmulator) -> None:
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        rules = gw.settings.state / "gates" / "rules.yaml"
        rules.write_text("rules:\n  - id: r\n    outcome: deny\n    outcome: annotate\n")
        deadline = time.monotonic() + 15
        while "[!]gate policy" not in (text := readyz(gw)[1]):
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        code, text = readyz(gw)
        assert code == 200 and 'duplicate key "outcome"' in text
    finally:
        gw.stop()


def test_users_hear_that_the_gateways_credential_was_refused(tmp_path: Path, upstream: harness.RunningEmulator,
                                                            kubectl_path: str) -> None:
    from tests.conftest import Kubectl

    wrong = emulator_cluster(upstream, token="not-the-gateways-token")
    gw = start_gateway(tmp_path / "gw", upstream, clusters=[wrong])
    try:
        kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "alice"))
        out = kubectl("get", "pods", check=False)
        assert out.returncode == 1
        assert "ServiceUnavailable" in out.stderr and "refused the gateway's credential" in out.stderr
        assert "You must be logged in" not in out.stderr
        assert 'cluster emu refused the gateway\'s credential' in (gw.log_file.read_text() if gw.log_file else "")
    finally:
        gw.stop()


class OddCluster:
    """An HTTPS server that answers the readiness probe's SelfSubjectReview with BODY (2xx), as no
    kube-apiserver would: a broken proxy in front of one, a misconfigured server URL."""

    def __init__(self, directory: Path, body: bytes, content_type: str = "application/json") -> None:
        import asyncio
        import socket
        import ssl
        import threading

        from aiohttp import web

        from kubegate import pki

        ca = pki.make_ca("odd-ca")
        ca.write(directory / "odd-ca.crt", directory / "odd-ca.key")
        pki.make_leaf(ca, "odd", ["127.0.0.1"]).write(directory / "odd.crt", directory / "odd.key")
        self.ca_file = directory / "odd-ca.crt"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        ready = threading.Event()

        async def answer(request: web.Request) -> web.Response:
            return web.Response(body=body, status=201, content_type=content_type)

        async def serve() -> None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(directory / "odd.crt", directory / "odd.key")
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", answer)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ctx).start()
            ready.set()

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.mark.parametrize(("body", "content_type", "named"), [
    pytest.param(b'{"status": "x"}', "application/json", "has no status.userInfo.username", id="status-not-an-object"),
    pytest.param(b'{"status": {"userInfo": []}}', "application/json", "has no status.userInfo.username",
                 id="userinfo-a-list"),
    pytest.param(b'{"status": {"userInfo": {"username": 7}}}', "application/json", "has no status.userInfo.username",
                 id="username-a-number"),
    pytest.param(b'[1, 2]', "application/json", "has no status.userInfo.username", id="a-list"),
    pytest.param(b"<html>gateway timeout</html>", "text/html", "cluster odd:", id="not-json"),
])
def test_an_odd_answer_to_the_probe_is_a_named_cluster_problem(tmp_path: Path, upstream: harness.RunningEmulator,
                                                                body: bytes, content_type: str, named: str) -> None:
    odd = OddCluster(tmp_path, body, content_type)
    gw = None
    try:
        gw = start_gateway(tmp_path / "gw", upstream, clusters=[
            {"name": "odd", "server": f"https://127.0.0.1:{odd.port}", "ca_file": str(odd.ca_file), "token": "t"}])
        code, text = readyz(gw)
        assert code == 503 and "[-]cluster odd:" in text and named in text, text
        assert "Traceback" not in (gw.log_file.read_text() if gw.log_file else "")
    finally:
        if gw is not None:
            gw.stop()
        odd.stop()
