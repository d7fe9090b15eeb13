"""Eight narrow changes to mitmproxy 12: five that fail-closed serving needs, one for its cost, one
for workers, one for memory.

1. Error pages. When mitmproxy itself answers (upstream unreachable, TLS verification failed,
   body too large, malformed HTTP), it writes an HTML page no hook can replace. kubectl shows
   those as "unknown" errors; every answer from kubegate must be a Kubernetes Status. The HTTP/1
   renderer is replaced (the gateway serves clients HTTP/1.1 only: mitmproxy's HTTP/2 error path
   hard-codes text/html).
2. Body limits. `body_size_limit` must cap request bodies (the gateway never streams a request
   body: a streamed body reaches the upstream before the `request` hook runs) but not responses,
   which the gateway streams itself and which may legitimately be large (lists). The check runs on
   every piece of a request body read, so it also notes on the flow how much has been read
   (`BODY_BYTES_READ`): the connection limits cut a body that arrives too slowly.
3. Header blocks. mitmproxy buffers a request's header block without limit ("FIXME: protect
   against header size DoS"): a client could make it read megabytes before any stage runs. A block
   past MAX_HEADER_BYTES is answered 431 (a Status) and the connection closed, before reading on.
4. Trailers. A chunked request with trailers raised NotImplementedError inside mitmproxy's layer,
   which crashed the connection's handler and left the client waiting forever. Such a message is
   now a protocol error: the client gets a 400 Status, the flow's error is audited, and the
   gateway serves on.
5. Killing a TCP flow. After a non-WebSocket upgrade (SPDY/3.1 exec) the connection is a TCP
   flow; mitmproxy's TCP layer ignores `flow.kill()`. A killed flow's connections are now closed
   after the hook that killed it (and `tcp_error` runs), so a session the recording cannot follow
   ends instead of running unrecorded.
6. Debug type checks. Unless Python runs with -O, mitmproxy type-checks every request and response
   object it builds (`MessageData.__post_init__`): about 3% of the gateway's CPU under load
   (bench/profile.py). The objects come from mitmproxy's own parsers; the check is dropped.

7. A shared port. `kubegate serve --workers N` runs N processes that each listen on the same port
   (the kernel spreads connections among them); mitmproxy's TCP listener does not set
   SO_REUSEPORT. When `reuse_port(True)` was called, its TCP servers are started with it (and
   without the UDP listener a reverse mode also opens: the gateway serves no HTTP/3).

8. Back-pressure through hooks. A connection's reader reads on as soon as its writers have
   drained; while a layer waits for a hook (every WebSocket or TCP message of an exec session is
   one: it is recorded), what the reader reads is queued inside the layer, without bound. A
   1 GiB `kubectl exec -i … -- cat` grew the process by about as much (bench/longrun.py). Now a
   connection reads on only once the hooks its handler started have completed, so at most one
   read (64 KiB) per connection waits in memory, and a client faster than the recording is slowed
   down by TCP, as it would be by a slow upstream.

Each is checked by tests that drive the gateway (oversized body, upstream down, wrong CA,
large list), so a mitmproxy upgrade that moves these internals fails loudly, not silently.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generator

from mitmproxy import flow as mitm_flow
from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events, mode_servers, server
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers import tcp as tcp_layer
from mitmproxy.proxy.layers.http import _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp

from kubegate import status as k8s_status

_installed = False
_reuse_port = False
MAX_HEADER_BYTES = 1024 * 1024


def status_for_proxy_error(code: int, message: str) -> k8s_status.Status:
    """The Status the client gets (and the audit records) when the proxy layer itself fails."""
    lowered = message.lower()
    if code == 413 or "body exceeds" in lowered:
        return k8s_status.failure(413, "kubegate: the request body is larger than this gateway accepts",
                                  reason="RequestEntityTooLarge")
    if "certificate" in lowered or "tls" in lowered or "ssl" in lowered:
        return k8s_status.failure(502, "kubegate: the cluster's API server could not be verified "
                                       f"(TLS): {message[:300]}", reason="InternalError")
    if code == 502:
        return k8s_status.failure(503, "kubegate: the cluster's API server is unreachable: "
                                       f"{message[:300]}", reason="ServiceUnavailable")
    if code == 431:
        return k8s_status.failure(431, f"kubegate: the request's header block is larger than {MAX_HEADER_BYTES} "
                                       "bytes; it was not read further", reason="RequestHeaderFieldsTooLarge")
    if code == 400:
        return k8s_status.failure(400, f"kubegate: malformed HTTP request: {message[:300]}", reason="BadRequest")
    return k8s_status.failure(code, f"kubegate: {message[:300]}")


def _status_error_response(status_code: int, message: str = "") -> bytes:
    body = status_for_proxy_error(status_code, message)
    resp = http.Response.make(body["code"], k8s_status.encode(body),
                              http.Headers(Content_Type="application/json", Connection="close"))
    return http1.assemble_response(resp)


BODY_BYTES_READ = "kubegate.body-bytes-read"  # flow.metadata: bytes of the request body read so far


def _requests_only(original: Any) -> Any:
    def check_body_size(self: Any, request: bool) -> Generator[Any, Any, bool]:
        if not request:
            return False
        if self.request_body_buf:
            self.flow.metadata[BODY_BYTES_READ] = len(self.request_body_buf)
        return (yield from original(self, request))
    return check_body_size


def _bounded_headers(original: Any) -> Any:
    def read_headers(self: Any, event: events.ConnectionEvent) -> Generator[Any, Any, None]:
        yield from original(self, event)
        still_reading = getattr(self.state, "__func__", None) is read_headers
        if still_reading and isinstance(event, events.DataReceived) and len(self.buf) > MAX_HEADER_BYTES:
            yield commands.SendData(self.conn, _status_error_response(431))
            yield commands.CloseConnection(self.conn)
            self.state = self.done
    return read_headers


def _trailers_refused(original: Any) -> Any:
    def read_body(self: Any, event: events.Event) -> Generator[Any, Any, None]:
        try:
            yield from original(self, event)
        except NotImplementedError as e:  # "HTTP trailers are not implemented yet."
            message = f"HTTP trailers are not accepted ({e})"
            if isinstance(self, _http1.Http1Server):
                yield commands.SendData(self.conn, _status_error_response(400, message))
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(self.ReceiveProtocolError(self.stream_id, message, code=self.ReceiveProtocolError.code))
            self.state = self.done
    return read_body


def _tcp_kill_honoured(original: Any) -> Any:
    def relay_messages(self: Any, event: events.Event) -> Generator[Any, Any, None]:
        yield from original(self, event)
        tcp_flow = self.flow
        if tcp_flow is not None and self._handle_event != self.done and tcp_flow.error is not None \
                and tcp_flow.error.msg == mitm_flow.Error.KILLED_MESSAGE:
            self._handle_event = self.done
            for conn in (self.context.server, self.context.client):
                yield commands.CloseConnection(conn)
            yield tcp_layer.TcpErrorHook(tcp_flow)
    return relay_messages


def reuse_port(on: bool) -> None:
    """Listen with SO_REUSEPORT (workers sharing one port) from now on."""
    global _reuse_port
    _reuse_port = on


def _shared_port(original: Any) -> Any:
    async def listen(self: Any, host: str, port: int) -> Any:
        if not _reuse_port or self.mode.transport_protocol not in ("tcp", "both") or port == 0:
            return await original(self, host, port)
        # TCP only: "both" would add a UDP (QUIC) listener, and the gateway serves no HTTP/3.
        return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]
    return listen


class _Hooks:
    """The blocking hooks a connection handler has started and not yet seen completed (patch 8)."""

    def __init__(self) -> None:
        self.running = 0
        self.idle = asyncio.Event()
        self.idle.set()


def _hooks_of(handler: Any) -> _Hooks:
    hooks = handler.__dict__.get("_kubegate_hooks")
    if hooks is None:
        hooks = handler.__dict__["_kubegate_hooks"] = _Hooks()
    return hooks


def _hooks_counted(original: Any) -> Any:
    async def hook_task(self: Any, hook: commands.StartHook) -> None:
        if not hook.blocking:
            return await original(self, hook)
        hooks = _hooks_of(self)
        hooks.running += 1
        hooks.idle.clear()
        try:
            await original(self, hook)  # the hook, then its HookCompleted (the layer resumes)
        finally:
            hooks.running -= 1
            if not hooks.running:
                hooks.idle.set()
    return hook_task


def _reads_wait_for_hooks(original: Any) -> Any:
    async def drain_writers(self: Any) -> None:
        await original(self)
        # Called by each connection's read loop before it reads again: it now also waits until
        # the layers have taken in what was read (no hook of this handler still running).
        hooks = self.__dict__.get("_kubegate_hooks")
        if hooks is not None and hooks.running:
            await hooks.idle.wait()
    return drain_writers


def install() -> None:
    global _installed
    if _installed:
        return
    _http1.make_error_response = _status_error_response
    _http1.Http1Server.read_headers = _bounded_headers(_http1.Http1Server.read_headers)  # type: ignore[method-assign]
    _http1.Http1Connection.read_body = _trailers_refused(_http1.Http1Connection.read_body)  # type: ignore[method-assign]
    http_layer.HttpStream.check_body_size = _requests_only(  # type: ignore[method-assign]
        http_layer.HttpStream.check_body_size)
    tcp_layer.TCPLayer.relay_messages = _tcp_kill_honoured(tcp_layer.TCPLayer.relay_messages)  # type: ignore[method-assign]
    mode_servers.AsyncioServerInstance.listen = _shared_port(  # type: ignore[method-assign]
        mode_servers.AsyncioServerInstance.listen)
    if "__post_init__" in vars(http.MessageData):
        http.MessageData.__post_init__ = _unchecked  # type: ignore[method-assign]
    server.ConnectionHandler.hook_task = _hooks_counted(server.ConnectionHandler.hook_task)  # type: ignore[method-assign]
    server.ConnectionHandler.drain_writers = _reads_wait_for_hooks(  # type: ignore[method-assign]
        server.ConnectionHandler.drain_writers)
    _installed = True


def _unchecked(self: Any) -> None:
    """MessageData without its debug type check (patch 6)."""
