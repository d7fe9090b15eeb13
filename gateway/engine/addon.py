"""The one mitmproxy addon: runs the stage list on every request and owns the flow's fate.

mitmproxy logs an exception raised in a hook and then FORWARDS the flow. Everything here is
therefore wrapped so that any failure ends in a Status answer (or a killed flow), never in a
forwarded request. Every flow gets one ResponseComplete (or Panic) audit event, when its
response has ended or it failed without one; a long-running one also a ResponseStarted event
when its response starts (gateway/audit_record.py builds them).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Sequence

from mitmproxy import connection, http, tcp, tls
from multidict import CIMultiDict
from OpenSSL import SSL

from kubegate import spdy
from kubegate import status as k8s_status
from kubegate.audit import recording
from kubegate.audit.sink import Sink

from ..clusters import forwarding
from . import upstream_tls
from .. import audit_record, pipeline
from ..context import METADATA_KEY, GateContext, RequestView, context_of
from ..errors import Denial, internal
from ..metrics import Metrics
from . import mitm_patches
from .mitm_patches import status_for_proxy_error
from ..request.info import is_discovery
from ..stages import Stage
from ..clusters.upstreams import Upstreams

log = logging.getLogger("kubegate.addon")
STREAM_ABOVE_BYTES = 1024 * 1024


NO_WRITE_AHEAD = "KUBEGATE_BENCH_NO_WRITE_AHEAD"
# How long an answer to a change waits for its completion record (a full or stalled audit disk):
# past it the client hears the outcome anyway, and the record follows when the disk takes writes.
ANSWER_WAITS_FOR_RECORD_SECONDS = 10.0


def _cancel(proxyserver: Any, client_id: str, why: str) -> bool:
    """Close a client connection from outside its handler, as mitmproxy's own idle timeout does
    (cancel the task reading it); False when it is gone already."""
    handler = proxyserver.connections.get(client_id) if proxyserver is not None else None
    io = handler.transports.get(handler.client) if handler is not None else None
    if io is None or io.handler is None:
        return False
    io.handler.cancel(why)
    return True


def _answer(denial: Denial, path: str) -> http.Response:
    """A refusal as the client gets it: a Status, and a Warning too on discovery paths."""
    return http.Response.make(denial.code, k8s_status.encode(denial.to_status()),
                              denial.headers(warn=is_discovery(path)))


def _finished(ctx: GateContext) -> bool:
    """Whether the request's last audit event (ResponseComplete or Panic) is written."""
    return "ResponseComplete" in ctx.audited_stages or "Panic" in ctx.audited_stages


def _view(flow: http.HTTPFlow) -> RequestView:
    req = flow.request
    raw_path, _, query = req.path.partition("?")
    peer = flow.client_conn.peername
    return RequestView(
        method=req.method, raw_path=raw_path, query=query,
        headers=CIMultiDict(req.headers.items(multi=True)),
        body=req.raw_content or b"", client_ip=peer[0] if peer else "",
    )


class GatewayAddon:
    def __init__(self, stages: Sequence[Stage], upstreams: Upstreams, sink: Sink, metrics: Metrics,
                 recorder: audit_record.Recorder | None = None, recordings: Path | None = None) -> None:
        self.stages = list(stages)
        self.upstreams = upstreams
        self.sink = sink
        self.metrics = metrics
        self.recorder = recorder or audit_record.Recorder()
        self.recordings = recordings  # where exec/attach sessions are recorded; None: not recorded
        # A change's record reaches the file before the change is forwarded. Off only to measure what
        # that costs (bench/audit.py --write-ahead): never in production, and said loudly at start.
        self.write_ahead = os.environ.get(NO_WRITE_AHEAD) != "1"
        if not self.write_ahead:
            log.warning("%s=1: changes are forwarded BEFORE their audit record is written (a benchmark switch; "
                        "a crash can lose the record of an executed change)", NO_WRITE_AHEAD)
        # client connection id -> the request whose 101 turned it into a TCP flow (SPDY/3.1)
        self._upgraded: dict[str, GateContext] = {}
        self.started = asyncio.Event()
        self.in_flight = 0  # requests between arrival and their last audit event (a drain waits on it)
        # Connections accepted whose first request has not arrived yet (in TLS, or being read): a
        # drain waits for them too, or a connection accepted just before the listener closed is cut.
        self.unheard: dict[str, tuple[float, str]] = {}  # client id -> (accepted at, source address)
        self._unheard_from: dict[str, int] = {}  # source address -> its connections in `unheard`
        self.idle: dict[str, float] = {}  # kept-alive connections between requests: client id -> since
        # Connection limits (listen.*): see `sweep_connections`.
        self.request_seconds, self.idle_seconds, self.max_unheard_per_source = 30.0, 120.0, 64
        self.min_body_rate = 1024  # bytes per second
        # Requests whose head has arrived and whose body is being read: flow id -> (head at, client id,
        # flow). Their body must keep up with min_body_rate (the bytes read so far are on the flow).
        self.uploading: dict[str, tuple[float, str, http.HTTPFlow]] = {}
        self.served = 0  # requests completed by this process
        # Long-running requests streaming now (watches, logs, exec/attach/port-forward, proxy): their
        # client connection and context, so that a logout or an expired token or grant can end them.
        self.streams: dict[str, tuple[str, GateContext]] = {}
        # Set when this process stops taking connections (a worker draining): each answer closes
        # its connection, so a client's next request goes to a process that serves on.
        self.draining = False
        # For connections to an address that is no cluster's: a context that trusts nothing.
        self._refuse_tls = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self._refuse_tls.set_verify(SSL.VERIFY_PEER, None)

    def _close_if_draining(self, response: http.Response) -> None:
        if self.draining:
            response.headers["Connection"] = "close"

    def running(self) -> None:
        self.started.set()

    def _context(self, flow: http.HTTPFlow) -> GateContext:
        ctx = context_of(flow.metadata)
        if ctx is None:
            ctx = GateContext(request=_view(flow), received=flow.request.timestamp_start or time.time())
            flow.metadata[METADATA_KEY] = ctx
            ctx.in_flight = True
            self.in_flight += 1
            self._heard(flow.client_conn.id)
            self.idle.pop(flow.client_conn.id, None)
            self.uploading.pop(flow.id, None)
            ctx.client_id = flow.client_conn.id
            self.metrics.inflight.inc()
        return ctx

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # The head is in: from here the connection's deadline is its body's (see sweep_connections).
        # It stays among the connections without a request (the per-source cap) until the body is in.
        self.idle.pop(flow.client_conn.id, None)
        self.uploading[flow.id] = (time.monotonic(), flow.client_conn.id, flow)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        ctx: GateContext | None = None
        try:
            ctx = self._context(flow)
            await pipeline.run(self.stages, ctx)
            if self.write_ahead and self.recorder.writes_ahead(ctx):
                await self._write_ahead(ctx)
            self._forward(flow, ctx)
        except Denial as denial:
            self._deny(flow, ctx, denial)
        except asyncio.CancelledError:
            flow.kill()
            raise
        except Exception as e:
            log.exception("request %s failed outside the stages", ctx.request_id if ctx else "?")
            self._deny(flow, ctx, internal("forward", e))

    async def _write_ahead(self, ctx: GateContext) -> None:
        """The change's RequestReceived record, in the file before the change is forwarded. The
        write runs off the event loop (it may wait for a batch, or fdatasync); if it fails the change
        is refused, never forwarded unrecorded."""
        event = self.recorder.event(ctx, "RequestReceived", 0, "", "", ahead=True)
        if event is None:
            return
        try:
            await asyncio.to_thread(self.sink.write_ahead, event)
        except OSError as e:
            self.metrics.audit_failures.inc()
            raise Denial(503, f"kubegate: the audit log cannot be written ({e.strerror or e}); this change was not "
                              "forwarded. Retry once the audit log takes writes again (see /readyz?verbose)",
                         "ServiceUnavailable", stage="audit") from None
        ctx.audited_stages.add("RequestReceived")

    def _forward(self, flow: http.HTTPFlow, ctx: GateContext) -> None:
        if ctx.upstream is None or ctx.identity is None or ctx.info is None:
            raise Denial(500, "kubegate: the request reached forwarding unclassified or without a cluster or "
                              "identity; it was not forwarded", "InternalError", stage="forward")
        # The query the gates judged, re-encoded as Go encodes it: never the raw string.
        plan = forwarding.plan(ctx.upstream, ctx.identity, ctx.path, ctx.query.encode(),
                               ctx.request.client_ip, ctx.request_id)
        headers = flow.request.headers
        remove, set_to = forwarding.header_edits(list(headers.items(multi=True)))
        for name in {k for k in headers.keys() if k.lower() in remove}:
            del headers[name]
        for name, value in set_to.items():
            headers[name] = value
        flow.request.scheme, flow.request.host, flow.request.port = "https", plan.host, plan.port
        flow.request.path = plan.path
        if ctx.forward_body is not None:  # a preview's delete, made a dry run in its DeleteOptions
            flow.request.content = ctx.forward_body
        for name, value in plan.add_headers:
            headers.add(name, value)
        ctx.forwarded, ctx.forwarded_at = True, time.time()

    def _deny(self, flow: http.HTTPFlow, ctx: GateContext | None, denial: Denial) -> None:
        try:
            if ctx is not None:
                ctx.denial, ctx.forwarded = denial, False
            path = (ctx.path or ctx.request.raw_path) if ctx else flow.request.path.partition("?")[0]
            flow.response = _answer(denial, path)
            self._close_if_draining(flow.response)
        except Exception:
            log.exception("cannot answer a denied request; killing it")
            flow.kill()

    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        ctx = context_of(flow.metadata)
        if ctx is None or flow.response is None:
            return
        try:
            if ctx.forwarded and ctx.upstream is not None and ctx.forwarded_at:
                started = flow.response.timestamp_start or time.time()
                self.metrics.upstream_seconds.labels(ctx.upstream.name).observe(max(0.0, started - ctx.forwarded_at))
            if ctx.forwarded:
                for hook in ctx.after_response:  # e.g. a refused delete gives its budget back
                    try:
                        await hook(flow.response.status_code)
                    except Exception:
                        log.exception("request %s: an after-response step failed", ctx.request_id)
            code = flow.response.status_code
            relayed = ctx.forwarded and code != 101
            wants_body = relayed and self.recorder.wants_response_body(ctx)
            held = relayed and self._held(ctx, flow.response, wants_body)
            if relayed and not held:
                # Passed through as it comes (watches, logs -f, lists, every answer whose body the
                # audit does not record); a response recorded in full is seen on its way.
                flow.response.stream = self._capture(ctx) if wants_body else True
            flow.response.headers["Audit-Id"] = ctx.request_id
            if code != 101:
                self._close_if_draining(flow.response)
            if ctx.forwarded and audit_record.long_running(ctx):
                self._record(ctx, "ResponseStarted", code)
                self.streams[ctx.request_id] = (flow.client_conn.id, ctx)
            elif code != 101 and not held and not wants_body:
                # The apiserver has answered: its event is written now, before the body is relayed.
                # (A response recorded in full but streamed, being unsized or large, is written when
                # it has passed, in `response`.)
                await self._complete_answered(ctx, code)
        except Exception:
            log.exception("cannot finish request %s", ctx.request_id)

    @staticmethod
    def _held(ctx: GateContext, response: http.Response, wants_body: bool) -> bool:
        """Whether a response is held until complete: one the audit records in full (small enough),
        and a 401, which the `response` hook turns into the gateway's own answer."""
        if audit_record.long_running(ctx):
            return False
        if response.status_code == 401:
            return True
        length = response.headers.get("Content-Length", "")
        return wants_body and length.isdigit() and int(length) <= STREAM_ABOVE_BYTES

    def _capture(self, ctx: GateContext) -> Callable[[bytes], bytes]:
        ctx.response_body = bytearray()
        limit = self.recorder.max_object_bytes * 4  # compressed or not, past this it is left out anyway

        def seen(chunk: bytes) -> bytes:
            if ctx.response_body is not None and not ctx.response_truncated:
                if len(ctx.response_body) + len(chunk) > limit:
                    ctx.response_truncated, ctx.response_body = True, bytearray()
                else:
                    ctx.response_body += chunk
            return chunk
        return seen

    async def response(self, flow: http.HTTPFlow) -> None:
        ctx = context_of(flow.metadata)
        if ctx is None or flow.response is None:
            return
        try:
            if flow.response.status_code == 101 and flow.websocket is not None:
                return  # a WebSocket session: complete when it ends (websocket_end)
            if flow.response.status_code == 101 and ctx.forwarded:
                # Any other upgrade (SPDY/3.1 exec, attach, port-forward) continues as a TCP flow on
                # this client connection: complete when that ends (tcp_end), recorded meanwhile.
                self._upgraded[flow.client_conn.id] = ctx
                self._start_spdy_recording(ctx, flow.response.headers.get("Upgrade", ""))
                return
            if ctx.forwarded and flow.response.status_code == 401 and ctx.upstream is not None:
                # The caller was authenticated here; a 401 upstream means the cluster refused the
                # gateway's own credential. The user hears that, not "you must be logged in".
                name = ctx.upstream.name
                log.error("cluster %s refused the gateway's credential (request %s)", name, ctx.request_id)
                refusal = Denial(503, f'kubegate: cluster "{name}" refused the gateway\'s credential; the '
                                      "request was not carried out; tell the gateway's operators",
                                 "ServiceUnavailable", stage="forward")
                ctx.annotations["kubegate.io/upstream"] = "the gateway's credential was refused"
                flow.response = _answer(refusal, ctx.path)
                flow.response.headers["Audit-Id"] = ctx.request_id
                self._close_if_draining(flow.response)
                await self._complete_answered(ctx, 503, refusal.message, refusal.reason or "")
                return
            if _finished(ctx):
                return  # written when the answer started (its body was relayed as it came)
            if ctx.forwarded and not flow.response.stream and self.recorder.wants_response_body(ctx):
                ctx.response_body = bytearray(flow.response.raw_content or b"")
            if ctx.response_body and flow.response.headers.get("Content-Encoding", "") == "gzip":
                try:
                    ctx.response_body = bytearray(gzip.decompress(bytes(ctx.response_body)))
                except (OSError, EOFError):
                    ctx.response_body = None
            await self._complete_answered(ctx, flow.response.status_code)
        except Exception:
            log.exception("cannot audit request %s", ctx.request_id)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        ctx = context_of(flow.metadata)
        if ctx is None:
            return
        if isinstance(ctx.recording, recording.Recording):
            try:
                ctx.annotations["kubegate.io/recording-sha256"] = ctx.recording.close()
            except OSError:
                log.exception("cannot close the recording of session %s", ctx.request_id)
        self._complete(ctx, 101)

    def error(self, flow: http.HTTPFlow) -> None:
        try:
            ctx = self._context(flow)
            if _finished(ctx):
                return
            message = flow.error.msg if flow.error else "unknown error"
            if "ResponseStarted" in ctx.audited_stages and flow.response is not None:
                # The response had started; the stream ended early (client gone, upstream closed).
                ctx.annotations["kubegate.io/stream-ended"] = message[:300]
                self._complete(ctx, flow.response.status_code)
                return
            status = status_for_proxy_error(502 if ctx.forwarded else 400, message)
            if "body exceeds" in message:
                ctx.annotations["kubegate.io/stage"] = "ingress"
            if ctx.forwarded and ctx.upstream is not None:
                self.metrics.upstream_errors.labels(ctx.upstream.name, str(status["code"])).inc()
            self._complete(ctx, status["code"], status["message"], status.get("reason", ""))
        except Exception:
            log.exception("cannot audit a failed request")

    def _complete(self, ctx: GateContext, code: int, message: str = "", reason: str = "", *,
                  durable: bool = False) -> Future[None] | None:
        """The request's last event (ResponseComplete, or Panic for a failure inside the gateway),
        once, and its metrics. DURABLE: a future done once the event is written (None if it already
        is, or is not recorded)."""
        self.streams.pop(ctx.request_id, None)
        if ctx.client_id and ctx.client_id not in self._upgraded:
            self.idle[ctx.client_id] = time.monotonic()  # kept alive, waiting for its next request
        if _finished(ctx):
            return None
        if ctx.denial is not None and not message:
            message, reason = ctx.denial.message, ctx.denial.reason or ""
        panic = ctx.denial is not None and ctx.denial.code == 500 and ctx.denial.reason == "InternalError"
        written = self._record(ctx, "Panic" if panic else "ResponseComplete", code, message, reason, durable=durable)
        self._count(ctx, code)
        return written

    async def _complete_answered(self, ctx: GateContext, code: int, message: str = "", reason: str = "") -> None:
        """`_complete` for a request about to be answered. A change written ahead is answered only
        once its completion is written too: a client that heard the outcome of a change finds it
        on record, and `audit search --incomplete` lists only changes whose callers were cut off."""
        written = self._complete(ctx, code, message, reason, durable="RequestReceived" in ctx.audited_stages)
        if written is None:
            return
        done, _ = await asyncio.wait({asyncio.wrap_future(written)}, timeout=ANSWER_WAITS_FOR_RECORD_SECONDS)
        if not done:
            log.error("request %s: its completion record is not written after %.0f s (is the audit log's disk "
                      "full or stalled?); answering anyway, the record follows when it can be written",
                      ctx.request_id, ANSWER_WAITS_FOR_RECORD_SECONDS)

    def _count(self, ctx: GateContext, code: int) -> None:
        info, m = ctx.info, self.metrics
        if ctx.seat is not None:
            ctx.seat.release()  # the next request in the users' turn gets it
        if ctx.in_flight:
            ctx.in_flight = False
            self.in_flight -= 1
            self.served += 1
            m.inflight.dec()
        cluster = ctx.upstream.name if ctx.upstream else ""
        # resource[.group][/subresource] (deployments.apps/scale): bounded per cluster (known_resources)
        resource = m.known_resources.label(cluster, info.object_ref, code, ctx.forwarded) if info else ""
        verb = info.verb if info else ""
        m.observe_stages(ctx.stage_seconds)
        m.count_request((cluster, verb, resource, str(code), ctx.decision, ctx.denial.stage if ctx.denial else ""))
        if not audit_record.long_running(ctx) and code != 101:
            m.request_seconds.labels(verb, resource, ctx.decision).observe(max(0.0, time.time() - ctx.received))
        if ctx.denial is not None and (why := ctx.denial.annotations.get("kubegate.io/authn-failure")):
            m.authn_failures.labels(why).inc()

    def _record(self, ctx: GateContext, stage: str, code: int, message: str = "", reason: str = "", *,
                durable: bool = False) -> Future[None] | None:
        if stage in ctx.audited_stages:
            return None
        ctx.audited_stages.add(stage)
        event = self.recorder.event(ctx, stage, code, message, reason)
        if event is None:
            return None
        try:
            if durable:
                return self.sink.write_durable(event)
            self.sink.write(event)  # queued: the writer thread writes it, counts it and times it
        except OSError:
            self.metrics.audit_dropped.inc()  # only while stopping: the writer takes nothing new
        return None

    def tls_start_server(self, tls_start: tls.TlsData) -> None:
        server = tls_start.conn
        assert isinstance(server, connection.Server)
        address = server.address
        upstream = self.upstreams.by_address(address[0], address[1]) if address else None
        if upstream is None:
            log.error("refusing TLS to %s: it is no configured cluster", address)
            tls_start.ssl_conn = SSL.Connection(self._refuse_tls)
            tls_start.ssl_conn.set_connect_state()
            return
        server.sni = upstream.server_name
        server.alpn_offers = (b"http/1.1",)
        tls_start.ssl_conn = upstream_tls.connection(upstream, [b"http/1.1"])

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        """An exec or attach session begins: record it, if recordings are kept."""
        ctx = context_of(flow.metadata)
        if ctx is None or self.recordings is None or ctx.info is None or \
                ctx.info.subresource not in ("exec", "attach") or flow.response is None:
            return
        try:
            ctx.recording = self._new_recording(ctx, flow.response.headers.get("Sec-WebSocket-Protocol", ""))
        except OSError:
            log.exception("cannot record session %s", ctx.request_id)

    def _new_recording(self, ctx: GateContext, subprotocol: str) -> recording.Recording:
        assert self.recordings is not None and ctx.info is not None
        name = f"{ctx.request_id}.cast"
        who = ctx.identity.user if ctx.identity else "?"
        rec = recording.Recording(
            self.recordings / name, subprotocol=subprotocol,
            title=f"{who}: {ctx.info.subresource} {ctx.info.namespace}/{ctx.info.name} "
                  f"({ctx.upstream.name if ctx.upstream else ''})",
            env={"COMMAND": " ".join(ctx.query.values("command")), "AUDIT_ID": ctx.request_id})
        ctx.annotations["kubegate.io/recording"] = name
        return rec

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:
            return
        ctx = context_of(flow.metadata)
        if ctx is not None and isinstance(ctx.recording, recording.Recording) and flow.websocket.messages:
            try:
                message = flow.websocket.messages[-1]
                ctx.recording.frame(message.content, message.from_client)
            except (OSError, ValueError, IndexError):
                log.exception("cannot record a message of session %s", ctx.request_id)
        # mitmproxy keeps every message until the connection closes: a long exec would grow forever.
        flow.websocket.messages.clear()

    def _start_spdy_recording(self, ctx: GateContext, upgrade: str) -> None:
        if self.recordings is None or ctx.info is None or ctx.info.subresource not in ("exec", "attach") \
                or not upgrade.lower().startswith("spdy/"):
            return
        try:
            rec = self._new_recording(ctx, "")
            ctx.recording = recording.SpdySession(rec)
        except OSError:
            log.exception("cannot record session %s", ctx.request_id)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        ctx = self._upgraded.pop(flow.client_conn.id, None)
        if ctx is not None:
            flow.metadata[METADATA_KEY] = ctx

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        ctx = context_of(flow.metadata)
        if ctx is not None and isinstance(ctx.recording, recording.SpdySession) and flow.messages:
            message = flow.messages[-1]
            try:
                ctx.recording.feed(message.content, message.from_client)
            except spdy.ProtocolError:
                # Not recorded blind: a session the recording cannot follow is ended, and what could
                # not be followed is not passed on.
                self._end_session(flow, ctx, "unreadable SPDY framing; session ended")
            except Exception:  # a disk error, or a bug in the recorder: never carried on unrecorded
                log.exception("cannot record a message of session %s", ctx.request_id)
                self._end_session(flow, ctx, "recording could not be written; session ended")
        flow.messages.clear()  # mitmproxy keeps every message until the connection closes

    @staticmethod
    def _end_session(flow: tcp.TCPFlow, ctx: GateContext, why: str) -> None:
        log.error("session %s: %s", ctx.request_id, why)
        ctx.annotations.setdefault("kubegate.io/recording-stopped", why)
        flow.messages[-1].content = b""
        if flow.killable:
            flow.kill()  # the connections close after this hook (mitm_patches)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        ctx = context_of(flow.metadata)
        if ctx is None:
            return
        if isinstance(ctx.recording, recording.SpdySession):
            try:
                ctx.annotations["kubegate.io/recording-sha256"] = ctx.recording.recording.close()
            except OSError:
                log.exception("cannot close the recording of session %s", ctx.request_id)
        self._complete(ctx, 101)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        ctx = context_of(flow.metadata)
        if ctx is not None and flow.error is not None and "kubegate.io/recording-stopped" not in ctx.annotations:
            ctx.annotations.setdefault("kubegate.io/stream-ended", flow.error.msg[:300])
        self.tcp_end(flow)

    def sweep_connections(self, proxyserver: Any, now: float) -> int:
        """Close connections that hold the gateway without using it: accepted but without a request
        head after `request_seconds` (a half-sent TLS handshake or request head: slowloris), over the
        per-source count of such connections, kept alive and idle past `idle_seconds`, or sending a
        body slower than `min_body_rate` on average once its first `request_seconds` have passed (a
        large upload at a usable speed takes as long as it needs). A connection with a request in
        flight (a watch, an exec session, a request waiting for an approval) is never touched."""
        closing: list[str] = []
        reading_body: set[str] = set()
        for fid, (since, cid, flow) in list(self.uploading.items()):
            if not flow.live or flow.error is not None:
                del self.uploading[fid]  # gone or failed while its body was read: no request came of it
                continue
            received = int(flow.metadata.get(mitm_patches.BODY_BYTES_READ, 0))
            if now - since > self.request_seconds + received / self.min_body_rate:
                del self.uploading[fid]
                closing.append(cid)
            else:
                reading_body.add(cid)
        closing += [cid for cid, (since, _) in self.unheard.items()
                    if now - since > self.request_seconds and (cid not in reading_body or since == float("-inf"))]
        closing += [cid for cid, since in self.idle.items() if now - since > self.idle_seconds]
        closed = 0
        for cid in closing:
            self._heard(cid)
            self.idle.pop(cid, None)
            closed += _cancel(proxyserver, cid, "kubegate: connection limit")
        return closed

    def end_stream(self, proxyserver: Any, request_id: str, why: str) -> bool:
        """Close a streaming request's client connection (mitmproxy cannot kill a flow in transit:
        its connection handler is cancelled, as its own idle timeout does). Its ResponseComplete
        event, written as the connection goes, carries `kubegate.io/stream-closed`."""
        found = self.streams.get(request_id)
        if found is None:
            return False
        found[1].annotations["kubegate.io/stream-closed"] = why
        return _cancel(proxyserver, found[0], f"kubegate: {why}")

    def _heard(self, client_id: str) -> None:
        """CLIENT_ID is no longer a connection without a request (it sent one, or it is gone)."""
        gone = self.unheard.pop(client_id, None)
        if gone is not None:
            left = self._unheard_from.get(gone[1], 1) - 1
            if left > 0:
                self._unheard_from[gone[1]] = left
            else:
                self._unheard_from.pop(gone[1], None)

    def client_connected(self, client: connection.Client) -> None:
        source = client.peername[0] if client.peername else ""
        count = self._unheard_from.get(source, 0)
        # Past the per-source count of connections that have sent no request yet, a connection is
        # closed at the next sweep (accepted "forever ago"), before it can hold anything.
        since = float("-inf") if count >= self.max_unheard_per_source else time.monotonic()
        self.unheard[client.id] = (since, source)
        self._unheard_from[source] = count + 1

    def client_disconnected(self, client: connection.Client) -> None:
        self._heard(client.id)
        self.idle.pop(client.id, None)
        ctx = self._upgraded.pop(client.id, None)  # upgraded, but no TCP flow ever started
        if ctx is not None:
            self._complete(ctx, 101)
