"""An aiohttp application served on 127.0.0.1 from a thread of its own: the tests' stand-in for a
service outside the gateway (a risk checker, a notification target, an audit center, an odd
apiserver), stopped by `stop()`."""

from __future__ import annotations

import asyncio
import ssl
import threading

from aiohttp import web


class ServedApp:
    def __init__(self, app: web.Application, *, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        ready = threading.Event()
        failed: list[BaseException] = []

        async def serve() -> None:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=ssl_context).start()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(serve())
            except BaseException as e:  # noqa: BLE001 - reported to the starting test below
                failed.append(e)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "the served app did not start"
        if failed:
            raise failed[0]
        self.port: int = self.runner.addresses[0][1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
