"""A request's blast radius, for the gates: assessed once per request (consequences.assess), as
the requester, within the read budget; kept on the request's context and in its audit event."""

from __future__ import annotations

import logging
from typing import Any

from ..clusters.client import UpstreamClient, UpstreamError
from ..consequences.assess import Change, assess
from ..consequences.radius import BlastRadius
from ..consequences.reader import ClusterReader, ReadLimits
from ..context import GateContext
from ..request import bodies
from .written import judged

log = logging.getLogger("kubegate.blast")
ANNOTATION = "kubegate.io/blast-radius"
SELECTORS = ("labelSelector", "fieldSelector")
FIELDS_READ = ("blast-radius", "fields")  # ctx.lookups: the radius includes the dry run's changed fields


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
    with_fields = fields and _updates(ctx)
    if isinstance(cached, BlastRadius) and (not with_fields or FIELDS_READ in ctx.lookups):
        return cached
    assert ctx.info is not None and ctx.upstream is not None and ctx.identity is not None
    # The object the request leaves (a patch applied to the live object), for scale-downs and cordons.
    written = await judged(ctx, client) if ctx.info.verb in ("create", "update", "patch") else bodies.NONE
    options = ctx.delete_options
    change = Change(ctx.info.acts, propagation=options.propagation_policy if options else "",
                    selectors={k: ctx.query.get(k) for k in SELECTORS if ctx.query.get(k)},
                    new=written.obj if written.readable and isinstance(written.obj, dict) else None,
                    unreadable="" if written.readable or _absent(ctx) else (written.error or "no body"),
                    method=ctx.request.method, query=ctx.query.encode(), body=ctx.request.body,
                    content_type=ctx.request.headers.get("Content-Type", ""))
    if options is not None and options.orphan_dependents and not change.propagation:
        change.propagation = "Orphan"
    # The live object a gate read already (a patch's target) is not read again.
    known: dict[str, dict[str, Any] | None] = {key[1]: value for key, value in ctx.lookups.items()
             if key[0] == "object" and len(key) == 2 and isinstance(value, dict)}
    reader = ClusterReader(client, ctx.upstream, ctx.identity, ctx.request_id, limits, known=known)
    radius = await assess(change, reader, fields=with_fields)
    if with_fields:
        ctx.lookups[FIELDS_READ] = True
    ctx.blast_radius = radius
    ctx.annotations[ANNOTATION] = radius.summary()[:1000]
    return radius


def _absent(ctx: GateContext) -> bool:
    """A patch to an object the cluster does not have: it will be answered 404 and takes nothing."""
    found = ctx.lookups.get(("object", ctx.path))
    return isinstance(found, UpstreamError) and found.status == 404


def _updates(ctx: GateContext) -> bool:
    return ctx.info is not None and ctx.info.verb in ("update", "patch")
