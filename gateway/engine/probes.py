"""The plain-HTTP listener for Prometheus and the kubelet: /metrics, /healthz, /livez, /readyz.
One for a single-process gateway, one for the supervisor of `serve --workers N`."""

from __future__ import annotations

from typing import Callable

from aiohttp import web

from ..metrics import CONTENT_TYPE

Readiness = Callable[[], tuple[bool, list[str]]]


async def serve_probes(host: str, port: int, exposition: Callable[[], bytes], readiness: Readiness) -> web.AppRunner:
    """Start the listener; the runner's `addresses` say where it listens, `cleanup()` ends it."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        # Alive: the process answers. (Whether it should get traffic is /readyz.)
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        # As kube-apiserver's /readyz: one line per check with ?verbose; 503 when one fails.
        ready, lines = readiness()
        if "verbose" not in request.query:
            return web.Response(text="ok" if ready else "not ready", status=200 if ready else 503)
        lines.append(f"readyz check {'passed' if ready else 'failed'}")
        return web.Response(text="\n".join(lines) + "\n", status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
