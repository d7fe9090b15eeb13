"""A request's blast radius, for the gates: assessed once per request (consequences.assess), as
the requester, within the read budget; kept on the request's context and in its audit event."""

from __future__ import annotations

import logging
from typing import Any

from ..clusters.client import UpstreamClient
from ..consequences.assess import Change, assess
from ..consequences.radius import BlastRadius
from ..consequences.reader import ClusterReader, ReadLimits
from ..context import GateContext
from ..request import bodies

log = logging.getLogger("kubegate.blast")
ANNOTATION = "kubegate.io/blast-radius"
SELECTORS = ("labelSelector", "fieldSelector")


def assessable(ctx: GateContext) -> bool:
    info = ctx.info
    return info is not None and info.is_resource and info.acts.mutating and ctx.upstream is not None \
        and ctx.identity is not None


async def radius_of(ctx: GateContext, client: UpstreamClient | None, limits: ReadLimits, *,
                    fields: bool = False) -> BlastRadius | None:
    """The request's blast radius (None for what changes nothing: reads, kubegate's own API). With
    FIELDS, also the field paths an update or patch changes (one dry run): for tickets and previews."""
    if not assessable(ctx) or client is None:
        return None
    cached = ctx.blast_radius
    if isinstance(cached, BlastRadius) and (cached.fields or not fields or not _updates(ctx)):
        return cached
    assert ctx.info is not None and ctx.upstream is not None and ctx.identity is not None
    judged = ctx.judged if isinstance(ctx.judged, bodies.Body) else None
    if judged is None and ctx.body_view is not None and isinstance(ctx.body_view, bodies.Body):
        judged = ctx.body_view
    if judged is None:
        judged = bodies.read(ctx.request.headers.get("Content-Type"), ctx.request.body)
    options = ctx.delete_options
    change = Change(ctx.info.acts, propagation=options.propagation_policy if options else "",
                    selectors={k: ctx.query.get(k) for k in SELECTORS if ctx.query.get(k)},
                    new=judged.obj if judged.readable and isinstance(judged.obj, dict) else None,
                    method=ctx.request.method, query=ctx.query.encode(), body=ctx.request.body,
                    content_type=ctx.request.headers.get("Content-Type", ""))
    if options is not None and options.orphan_dependents and not change.propagation:
        change.propagation = "Orphan"
    # The live object a gate read already (a patch's target) is not read again.
    known: dict[str, dict[str, Any] | None] = {key[1]: value for key, value in ctx.lookups.items()
             if key[0] == "object" and len(key) == 2 and isinstance(value, dict)}
    reader = ClusterReader(client, ctx.upstream, ctx.identity, ctx.request_id, limits, known=known)
    radius = await assess(change, reader, fields=fields and _updates(ctx))
    ctx.blast_radius = radius
    ctx.annotations[ANNOTATION] = radius.summary()[:1000]
    return radius


def _updates(ctx: GateContext) -> bool:
    return ctx.info is not None and ctx.info.verb in ("update", "patch")
