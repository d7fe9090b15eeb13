"""Running the emulator: over TLS with a fresh CA, on 127.0.0.1, in a background thread.

Tests start it through a pytest fixture and read its request log in-process; `python -m
kubegate.emulator` runs the same thing in the foreground and writes a kubeconfig for it.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from aiohttp import web

from kubegate import pki
from kubegate.aio import abort_leftover_transports

from .identity import Credential, UserInfo
from .server import Emulator, RequestRecord

T = TypeVar("T")

ADMIN = UserInfo("kubernetes-admin", ("system:masters", "system:authenticated"))
# The credential a gateway forwards with: may impersonate, as the ClusterRole kubegate ships grants.
GATEWAY = UserInfo("system:serviceaccount:kubegate-system:kubegate",
                   ("system:serviceaccounts", "system:serviceaccounts:kubegate-system",
                    "system:authenticated"))
# An ordinary user's credential: may not impersonate.
PLAIN = UserInfo("jane", ("developers", "system:authenticated"))
CLIENT_CERT_USER = "kubegate-gateway-cert"


@dataclass
class RunningEmulator:
    """A started emulator: its URL, CA, credentials, and handles into its state."""

    url: str
    port: int
    directory: Path
    emulator: Emulator
    admin_token: str
    gateway_token: str
    plain_token: str
    ca_file: Path
    client_cert_file: Path  # a client certificate (CN kubegate-gateway-cert) that may impersonate
    client_key_file: Path
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _runner: web.AppRunner
    extra: dict[str, Any] = field(default_factory=dict)

    def call(self, fn: Callable[[], T]) -> T:
        """Run fn on the emulator's loop (its state is not thread-safe) and return its result."""
        async def wrapped() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(timeout=10)

    @property
    def requests(self) -> list[RequestRecord]:
        return self.call(lambda: list(self.emulator.requests))

    def clear_requests(self) -> None:
        self.call(self.emulator.requests.clear)

    def append_log(self, namespace: str, pod: str, container: str, line: str) -> None:
        self.call(lambda: self.emulator.store.append_log(namespace, pod, container, line))

    def kubeconfig(self, path: Path, *, token: str | None = None, user: str = "admin",
                   namespace: str = "default") -> Path:
        write_kubeconfig(path, self.url, self.ca_file.read_text(), token or self.admin_token,
                         user=user, namespace=namespace)
        return path

    def stop(self) -> None:
        async def shutdown() -> None:
            await self._runner.cleanup()
            await abort_leftover_transports()
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


def write_kubeconfig(path: Path, server: str, ca_pem: str, token: str, *, user: str = "admin",
                     cluster: str = "emulator", namespace: str = "default") -> None:
    import base64

    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster, "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": f"{user}@{cluster}", "context": {
            "cluster": cluster, "user": user, "namespace": namespace}}],
        "current-context": f"{user}@{cluster}",
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def start(directory: Path | None = None, *, port: int = 0, host: str = "127.0.0.1",
          **emulator_options: Any) -> RunningEmulator:
    """Start an emulator in a background thread; returns once it accepts connections."""
    directory = Path(directory or tempfile.mkdtemp(prefix="kubegate-emulator-"))
    directory.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca("kubegate-emulator-ca")
    serving = pki.make_leaf(ca, "kube-apiserver", [host, "localhost", "127.0.0.1"])
    client = pki.make_leaf(ca, CLIENT_CERT_USER, [], client=True, organizations=["kubegate"])
    ca.write(directory / "ca.crt", directory / "ca.key")
    serving.write(directory / "apiserver.crt", directory / "apiserver.key")
    client.write(directory / "client.crt", directory / "client.key")

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(directory / "apiserver.crt", directory / "apiserver.key")
    ctx.load_verify_locations(directory / "ca.crt")
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate authenticates, a token works without

    tokens = {secrets.token_urlsafe(24): cred for cred in (
        Credential(ADMIN, may_impersonate=True), Credential(GATEWAY, may_impersonate=True),
        Credential(PLAIN))}
    by_user = {c.user.username: t for t, c in tokens.items()}
    emulator = Emulator(tokens=tokens, cert_impersonators=frozenset({CLIENT_CERT_USER}), **emulator_options)

    loop = asyncio.new_event_loop()
    ready: "asyncio.Future[tuple[web.AppRunner, int]]" = loop.create_future()

    async def serve() -> None:
        runner = web.AppRunner(emulator.app(), handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ctx, reuse_address=True)
        await site.start()
        assert runner.addresses
        ready.set_result((runner, runner.addresses[0][1]))

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.create_task(serve())
        loop.run_forever()

    thread = threading.Thread(target=run, name="kube-emulator", daemon=True)
    thread.start()
    runner, bound = asyncio.run_coroutine_threadsafe(_wait(ready), loop).result(timeout=30)
    return RunningEmulator(
        url=f"https://{host}:{bound}", port=bound, directory=directory, emulator=emulator,
        admin_token=by_user[ADMIN.username], gateway_token=by_user[GATEWAY.username],
        plain_token=by_user[PLAIN.username], ca_file=directory / "ca.crt",
        client_cert_file=directory / "client.crt", client_key_file=directory / "client.key",
        _loop=loop, _thread=thread, _runner=runner,
    )


async def _wait(fut: "asyncio.Future[T]") -> T:
    return await fut
