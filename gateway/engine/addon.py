"""The one mitmproxy addon: runs the stage list on every request and owns the flow's fate.

mitmproxy logs an exception raised in a hook and then FORWARDS the flow. Everything here is
therefore wrapped so that any failure ends in a Status answer (or a killed flow), never in a
forwarded request. Every flow is audited exactly once: when its response starts, or when it
fails without one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Sequence

from mitmproxy import connection, http, tcp, tls
from multidict import CIMultiDict
from OpenSSL import SSL

from kubegate import status as k8s_status
from kubegate.audit import events
from kubegate.audit.sink import Sink

from ..clusters import forwarding
from . import upstream_tls
from .. import pipeline
from ..context import METADATA_KEY, GateContext, RequestView, context_of
from ..errors import Denial, internal
from ..metrics import Metrics
from .mitm_patches import status_for_proxy_error
from ..request.info import is_discovery
from ..stages import Stage
from ..clusters.upstreams import Upstreams

log = logging.getLogger("kubegate.addon")


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
    def __init__(self, stages: Sequence[Stage], upstreams: Upstreams, sink: Sink, metrics: Metrics) -> None:
        self.stages = list(stages)
        self.upstreams = upstreams
        self.sink = sink
        self.metrics = metrics
        self.started = asyncio.Event()
        # For connections to an address that is no cluster's: a context that trusts nothing.
        self._refuse_tls = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self._refuse_tls.set_verify(SSL.VERIFY_PEER, None)

    def running(self) -> None:
        self.started.set()

    def _context(self, flow: http.HTTPFlow) -> GateContext:
        ctx = context_of(flow.metadata)
        if ctx is None:
            ctx = GateContext(request=_view(flow), received=flow.request.timestamp_start or time.time())
            flow.metadata[METADATA_KEY] = ctx
        return ctx

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        ctx: GateContext | None = None
        try:
            ctx = self._context(flow)
            await pipeline.run(self.stages, ctx)
            self._forward(flow, ctx)
        except Denial as denial:
            self._deny(flow, ctx, denial)
        except asyncio.CancelledError:
            flow.kill()
            raise
        except Exception as e:
            log.exception("request %s failed outside the stages", ctx.request_id if ctx else "?")
            self._deny(flow, ctx, internal("forward", e))

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
        for name, value in plan.add_headers:
            headers.add(name, value)
        ctx.forwarded = True

    def _deny(self, flow: http.HTTPFlow, ctx: GateContext | None, denial: Denial) -> None:
        try:
            if ctx is not None:
                ctx.denial, ctx.forwarded = denial, False
            path = (ctx.path or ctx.request.raw_path) if ctx else flow.request.path.partition("?")[0]
            flow.response = http.Response.make(denial.code, k8s_status.encode(denial.to_status()),
                                               denial.headers(warn=is_discovery(path)))
        except Exception:
            log.exception("cannot answer a denied request; killing it")
            flow.kill()

    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        ctx = context_of(flow.metadata)
        if ctx is None or flow.response is None:
            return
        try:
            if ctx.forwarded:
                for hook in ctx.after_response:  # e.g. a refused delete gives its budget back
                    try:
                        await hook(flow.response.status_code)
                    except Exception:
                        log.exception("request %s: an after-response step failed", ctx.request_id)
            if ctx.forwarded and flow.response.status_code != 101:
                flow.response.stream = True  # watches, logs -f, large lists: pass through as they come
            flow.response.headers["Audit-Id"] = ctx.request_id
            message = ctx.denial.message if ctx.denial else ""
            reason = (ctx.denial.reason or "") if ctx.denial else ""
            self._audit(ctx, flow.response.status_code, message, reason)
        except Exception:
            log.exception("cannot finish request %s", ctx.request_id)

    def error(self, flow: http.HTTPFlow) -> None:
        try:
            ctx = self._context(flow)
            if ctx.audited:
                return  # the response had started (and was audited); the stream ended early
            message = flow.error.msg if flow.error else "unknown error"
            status = status_for_proxy_error(502 if ctx.forwarded else 400, message)
            if "body exceeds" in message:
                ctx.annotations["kubegate.io/stage"] = "ingress"
            if ctx.forwarded and ctx.upstream is not None:
                self.metrics.upstream_errors.labels(ctx.upstream.name, str(status["code"])).inc()
            self._audit(ctx, status["code"], status["message"], status.get("reason", ""))
        except Exception:
            log.exception("cannot audit a failed request")

    def _audit(self, ctx: GateContext, code: int, message: str, reason: str) -> None:
        if ctx.audited:
            return
        ctx.audited = True
        info = ctx.info
        annotations = {"kubegate.io/decision": ctx.decision, **ctx.annotations}
        if ctx.denial is not None:
            annotations["kubegate.io/stage"] = ctx.denial.stage
            annotations.update(ctx.denial.annotations)
        object_ref = None
        if info is not None and info.is_resource:
            object_ref = {k: v for k, v in {
                "resource": info.resource, "namespace": info.namespace, "name": info.name,
                "apiGroup": info.api_group, "apiVersion": info.api_version, "subresource": info.subresource,
            }.items() if v}
        request_uri = ctx.request.raw_path + (f"?{ctx.request.query}" if ctx.request.query else "")
        event = events.event(
            audit_id=ctx.request_id, stage="ResponseStarted", request_uri=request_uri,
            verb=info.verb if info else ctx.request.method.lower(),
            user=ctx.identity.to_audit() if ctx.identity else None, source_ips=[ctx.request.client_ip],
            user_agent=ctx.request.user_agent, object_ref=object_ref, code=code, status_message=message,
            reason=reason, received=ctx.received, now=time.time(), annotations=annotations)
        try:
            self.sink.write(event)
        except OSError:
            self.metrics.audit_failures.inc()  # the sink keeps it pending; new requests wait (Ingress)
        self.metrics.observe_stages(ctx.stage_seconds)
        self.metrics.requests.labels(
            ctx.upstream.name if ctx.upstream else "", info.verb if info else "",
            info.resource if info else "", str(code), ctx.decision,
            ctx.denial.stage if ctx.denial else "").inc()

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

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        # mitmproxy keeps every message until the connection closes: a long exec would grow forever.
        if flow.websocket is not None:
            flow.websocket.messages.clear()

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        flow.messages.clear()  # SPDY/3.1 exec after the 101: a raw pipe, trimmed the same way
