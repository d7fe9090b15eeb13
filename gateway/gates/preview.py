"""`kubegate preview`: a kubectl line (or a manifest) run against the gateway without executing it.

The command points a copy of the user's kubeconfig at `/kubegate/preview/<id>/…` and runs kubectl.
Every request under that prefix takes the whole request path as it would (authentication,
authorization, every gate), with two differences: a mutation is forwarded as a dry run
(`dryRun=All`, in the query or, for a delete with DeleteOptions, in its body — what the apiserver
reads), and a change a gate would hold opens no ticket: it is answered 403 saying so. Reads go on
as usual, so kubectl's own reads (apply's GET, drain's pod list) see the real cluster. For each
mutation the outcome and its blast radius (read as the requester) are kept under the preview's id
for an hour; `GET /kubegate/v1/previews/<id>` (its owner only) is what the command prints.
Exec, attach, port-forward and proxy cannot be dry-run and are refused in a preview.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any, Callable

from ..clusters.client import UpstreamClient
from ..consequences.reader import ReadLimits
from ..context import OWN_API, GateContext
from ..errors import Answer, Denial
from ..request import bodies, deleteoptions
from ..state.store import StateStore, StoreUnavailable, room_for
from . import blast

PREFIX = OWN_API + "/preview/"
API = OWN_API + "/v1/previews"
KIND = "previews"
TTL_SECONDS = 3600.0
MAX_ENTRIES = 200  # requests one preview records
MAX_PREVIEWS = 1000  # previews kept at once (each lapses after TTL_SECONDS)
_ID = re.compile(r"^[a-z0-9]{8,40}$")
NOT_DRY_RUNNABLE = frozenset({"exec", "attach", "portforward", "proxy"})
GATES = frozenset({"freeze", "rules", "limits", "webhooks", "approvals"})  # stages after authorization


def new_id() -> str:
    return secrets.token_hex(10)


class PreviewService:
    """Preview reports in the state store: id -> {user, created, entries}."""

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store, self.clock = store, clock

    async def record(self, preview: str, user: str, entry: dict[str, Any]) -> None:
        for _ in range(8):  # compare-and-swap: kubectl may send a preview's requests side by side
            raw = await self.store.get(KIND, preview)
            if raw is None:
                await room_for(self.store, KIND, "previews", MAX_PREVIEWS)
                report: dict[str, Any] = {"user": user, "created": self.clock(), "entries": []}
            else:
                report = json.loads(raw)
                if report.get("user") != user:
                    return  # somebody else's id: nothing of theirs is added to it (nor shown to them)
            if len(report["entries"]) >= MAX_ENTRIES:
                return
            report["entries"].append(entry)
            if await self.store.swap(KIND, preview, raw, json.dumps(report)):
                return

    async def get(self, preview: str, user: str) -> dict[str, Any] | None:
        raw = await self.store.get(KIND, preview)
        if raw is None:
            return None
        report: dict[str, Any] = json.loads(raw)
        return report if report.get("user") == user and self.clock() < report["created"] + TTL_SECONDS else None

    async def purge(self) -> int:
        gone = 0
        for key, raw in (await self.store.items(KIND)).items():
            if self.clock() >= json.loads(raw)["created"] + TTL_SECONDS and await self.store.swap(KIND, key, raw, None):
                gone += 1
        return gone


class PreviewPrefix:
    """`/kubegate/preview/<id>/<path>`: the request for <path>, in preview <id>."""

    name = "preview-prefix"

    async def __call__(self, ctx: GateContext) -> None:
        raw = ctx.request.raw_path
        if not raw.startswith(PREFIX):
            return
        preview, slash, rest = raw[len(PREFIX):].partition("/")
        if not _ID.match(preview):
            raise Denial(404, "kubegate: a preview path is /kubegate/preview/<id>/<API path>, the id 8 to 40 "
                              "lower-case letters and digits (`kubegate preview` makes one)", "NotFound")
        path = slash + rest if rest else "/"
        if path == OWN_API or path.startswith(OWN_API + "/"):  # kubegate's own API is never previewed
            raise Denial(404, "kubegate: kubegate's own API is not under a preview prefix", "NotFound")
        ctx.preview = preview
        ctx.request.raw_path = path
        ctx.annotations["kubegate.io/preview"] = preview


class PreviewDryRun:
    """In a preview, after classify: every mutation becomes a dry run, and its outcome is reported."""

    name = "preview"

    def __init__(self, previews: PreviewService, client: UpstreamClient, limits: ReadLimits) -> None:
        self.previews, self.client, self.limits = previews, client, limits

    async def __call__(self, ctx: GateContext) -> None:
        info = ctx.info
        if not ctx.preview or info is None or not info.is_resource:
            return
        if info.subresource in NOT_DRY_RUNNABLE:
            raise Denial(403, f"kubegate preview: {info.subresource} cannot be previewed (it cannot be dry-run); "
                              "nothing was sent", "Forbidden")
        if not info.mutating:
            return
        ctx.query = ctx.query.with_value("dryRun", "All")
        if info.verb in ("delete", "deletecollection") and ctx.delete_options is not None \
                and ctx.delete_options.source == "body":
            body = ctx.body_view
            if body is None or not body.readable or not isinstance(body.obj, dict) or body.kind != "json":
                raise Denial(400, "kubegate preview: this delete's DeleteOptions body is not JSON, so it cannot be "
                                  "made a dry run; nothing was sent", "BadRequest")
            options = {**body.obj, "dryRun": ["All"]}
            ctx.forward_body = json.dumps(options).encode()
            ctx.delete_options = deleteoptions.for_delete(ctx.query, bodies.read("application/json", ctx.forward_body))
        elif ctx.delete_options is not None:
            ctx.delete_options = deleteoptions.DeleteOptions(True, ctx.delete_options.propagation_policy,
                                                            ctx.delete_options.grace_period_seconds,
                                                            ctx.delete_options.orphan_dependents,
                                                            ctx.delete_options.source)
        # Fail closed: what is forwarded must be a dry run as the apiserver reads it.
        if not (ctx.delete_options.dry_run if ctx.delete_options is not None else ctx.query.dry_run):
            raise Denial(500, "kubegate preview: the request could not be made a dry run; nothing was sent",
                         "InternalError")
        ctx.on_decided.append(self._report)

    async def _report(self, ctx: GateContext, denial: Denial | None) -> None:
        assert ctx.info is not None and ctx.identity is not None
        judged = denial is None or denial.stage in GATES  # past authorization: its consequences matter
        radius = await blast.radius_of(ctx, self.client, self.limits, fields=True) if judged else None
        if denial is None:
            outcome, message = "allowed", ""
        elif denial.stage == "approvals":
            outcome, message = "needs approval", denial.message
        else:
            outcome, message = "refused", denial.message
        info = ctx.info
        entry = {"method": ctx.request.method, "path": ctx.path, "verb": info.verb, "resource": info.object_ref,
                 "namespace": info.namespace, "name": info.name, "outcome": outcome, "message": message,
                 "code": denial.code if denial is not None else 200,
                 "blastRadius": radius.to_json() if radius is not None else None}
        try:
            await self.previews.record(ctx.preview, ctx.identity.user, entry)
        except StoreUnavailable:
            pass  # the report lacks this request; the request itself is unaffected


class PreviewApi:
    """GET /kubegate/v1/previews/<id>: a preview's report, to the user who made it (to anyone else, and
    for an id nothing was recorded under, an empty one)."""

    name = "preview-api"

    def __init__(self, previews: PreviewService) -> None:
        self.previews = previews

    async def __call__(self, ctx: GateContext) -> None:
        path = ctx.request.own_path
        if not (path == API or path.startswith(API + "/")):
            return
        assert ctx.identity is not None
        preview = path[len(API) + 1:]
        if ctx.request.method != "GET" or not _ID.match(preview):
            raise Denial(404, f"kubegate: no such previews API call: {ctx.request.method} {path}", "NotFound")
        try:
            report = await self.previews.get(preview, ctx.identity.user)
        except StoreUnavailable as e:
            raise Denial(503, f"kubegate: previews are unavailable: {e}", "ServiceUnavailable") from None
        # None: no change of this user's was previewed under the id (or it lapsed after an hour).
        raise Answer(200, "", body={"kind": "Preview", "id": preview, "entries": [], **(report or {})})
