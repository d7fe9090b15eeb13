"""What a request writes, as the gates read it: its body decoded once, and for a patch the object
the patch leaves of the live object (read as the caller) — what the apiserver will store."""

from __future__ import annotations

from typing import Any

from ..clusters.client import UpstreamClient, UpstreamError
from ..context import GateContext
from ..request import bodies, patches
from . import lookups


def body_of(ctx: GateContext) -> bodies.Body:
    """The request body as rules and webhooks read it, decoded once per request."""
    if not isinstance(ctx.body_view, bodies.Body):
        ctx.body_view = bodies.read(ctx.request.headers.get("Content-Type"), ctx.request.body)
    return ctx.body_view


async def judged(ctx: GateContext, client: UpstreamClient | None) -> bodies.Body:
    """What rules and webhooks judge: the object the request writes. For a patch that is the live
    object (read as the caller) with the patch applied: what the apiserver will store. What cannot
    be modelled is unreadable, and rules take their conservative outcome."""
    if isinstance(ctx.judged, bodies.Body):
        return ctx.judged
    body = body_of(ctx)
    if ctx.info is None or ctx.info.verb != "patch" or body.kind not in patches.PATCH_KINDS or not body.readable:
        ctx.judged = body
        return body
    live: dict[str, Any] | None = None
    try:
        if client is None or ctx.upstream is None or ctx.identity is None:
            raise UpstreamError(500, "no client to read the live object with")
        found = await lookups.live_object(ctx, client, ctx.path)
        live = found if isinstance(found, dict) else None
    except UpstreamError as e:
        if e.status != 404:
            ctx.judged = bodies.Body(None, body.kind, f"the object to patch could not be read ({e.message})")
            return ctx.judged
    ctx.patched_live = live
    try:
        ctx.judged = bodies.Body(patches.apply(body.kind, live, body.data), body.kind)
    except patches.PatchError as e:
        ctx.judged = bodies.Body(None, body.kind, f"the patch's result cannot be modelled: {e}")
    return ctx.judged
