"""What gates read from the cluster about a request — the live object, how many objects a selection
holds — read once per request however many gates ask (a patch to a protected Deployment is looked
at by the body rules and by the protected-object rule; a collection delete is counted by the
no-selector rule and by its delete budget). Always as the caller, through `clusters.client`.
"""

from __future__ import annotations

from typing import Any

from ..clusters.client import UpstreamClient, UpstreamError
from ..context import GateContext
from ..request.query import Query


def _cached(ctx: GateContext, key: tuple[str, ...]) -> Any:
    found = ctx.lookups.get(key)
    if isinstance(found, UpstreamError):
        raise found
    return found


async def live_object(ctx: GateContext, client: UpstreamClient, path: str) -> Any:
    """The object at `path` as the caller sees it now; UpstreamError (404 too) as the cluster says."""
    key = ("object", path)
    if key not in ctx.lookups:
        assert ctx.upstream is not None and ctx.identity is not None
        try:
            ctx.lookups[key] = await client.get_object(ctx.upstream, ctx.identity, path, ctx.request_id)
        except UpstreamError as e:
            ctx.lookups[key] = e
    return _cached(ctx, key)


async def count(ctx: GateContext, client: UpstreamClient, query: Query) -> int:
    """How many objects a list of the request's path with `query`'s selectors returns."""
    key = ("count", ctx.path, query.encode())
    if key not in ctx.lookups:
        assert ctx.upstream is not None and ctx.identity is not None
        try:
            ctx.lookups[key] = await client.count(ctx.upstream, ctx.identity, ctx.path, query, ctx.request_id)
        except UpstreamError as e:
            ctx.lookups[key] = e
    result: int = _cached(ctx, key)
    return result
