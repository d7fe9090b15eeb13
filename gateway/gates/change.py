"""The change gates: freeze windows, the change-risk rule library, risk webhooks and approvals.

Default order in the request path: freeze -> rules -> (limits) -> webhooks -> approvals.
Freeze windows and rules run first because they are cheap and local; webhooks call out and run
only for what survived; approvals come last so one ticket covers every reason the request needs
a second person for (a freeze window, a rule, a webhook), and so a ticket is opened only for a
request nothing else refuses.

A freeze window does not refuse outright: the refusal opens a break-glass ticket, and an approved
break-glass is the way through a freeze, as the issue of approvals describes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import time
from typing import Any, Awaitable, Callable

import aiohttp

from ..consequences import checks
from ..consequences.reader import ReadLimits
from ..request import bodies, patches
from . import blast, lookups
from .written import body_of as _body, judged
from .approvals import ApprovalError, ApprovalService, Request, preview, redacted_changes, ticket_json
from .change_policy import ChangePolicy, FreezeWindow, Rule, Webhook
from ..context import GateContext
from ..errors import Answer, Denial
from ..identity.identity import Identity
from ..metrics import Metrics
from ..request.info import RequestInfo
from ..state.store import Bucket, StateStore, StoreUnavailable
from ..clusters.client import SELECTORS, UpstreamClient, UpstreamError

log = logging.getLogger("kubegate.change")
# A deny rule on consequences the blast radius could not read whole asks for approval instead.
UNSEEN = " (the rule refuses; as its consequences could not be read whole, a person decides)"
REVIEW_VERSION = "kubegate.io/v1"

PolicySource = Callable[[], ChangePolicy]


def _exempt(identity: Identity, groups: tuple[str, ...]) -> bool:
    return any(g in groups for g in identity.groups)


def _refuse(metrics: Metrics | None, gate: str, reason: str, name: str) -> None:
    if metrics:
        metrics.gate_refusals.labels(gate, reason, name).inc()


def _ready(ctx: GateContext) -> tuple[Identity, str, RequestInfo]:
    if ctx.identity is None or ctx.info is None or ctx.upstream is None:
        raise Denial(500, "kubegate: a change gate ran before authentication and routing", "InternalError")
    return ctx.identity, ctx.upstream.name, ctx.info


class FreezeGate:
    name = "freeze"

    def __init__(self, policy: PolicySource, clock: Callable[[], float] = time.time) -> None:
        self.policy, self.clock = policy, clock

    async def __call__(self, ctx: GateContext) -> None:
        identity, cluster, info = _ready(ctx)
        now = self.clock()
        for window in self.policy().freeze:
            if not window.match.matches(cluster, info) or _exempt(identity, window.exempt_groups):
                continue
            span = window.active(now)
            if span is None:
                continue
            ctx.break_glass = True
            ctx.approval_reasons.append(f"change freeze {window.name} is in force until {span[1].isoformat()}"
                                        + (f" ({window.description})" if window.description else ""))
            ctx.annotations["kubegate.io/freeze"] = window.name


def freeze_status(windows: tuple[FreezeWindow, ...], now: float) -> list[dict[str, Any]]:
    """Every window with whether it is in force now and its current or next span."""
    out = []
    for w in windows:
        active = w.active(now)
        span = active or w.upcoming(now)
        out.append({"name": w.name, "description": w.description, "active": active is not None,
                    "start": span[0].isoformat() if span else None, "end": span[1].isoformat() if span else None,
                    "clusters": list(w.match.clusters), "namespaces": list(w.match.namespaces),
                    "resources": list(w.match.resources), "verbs": sorted(w.match.verbs),
                    "exemptGroups": list(w.exempt_groups)})
    return out


class RulesGate:
    name = "rules"

    def __init__(self, policy: PolicySource, store: StateStore, counter: UpstreamClient, *,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None,
                 limits: ReadLimits = ReadLimits()) -> None:
        self.policy, self.store, self.counter, self.clock, self.metrics = policy, store, counter, clock, metrics
        self.limits = limits

    async def __call__(self, ctx: GateContext) -> None:
        identity, cluster, info = _ready(ctx)
        for rule in self.policy().rules:
            if not rule.match.matches(cluster, info) or _exempt(identity, rule.exempt_groups):
                continue
            fired, why = await self._fires(rule, ctx, identity, cluster, info)
            if not fired:
                continue
            text = f"rule {rule.id} ({rule.severity}): {rule.description or rule.id}{why}"
            outcome = "require-approval" if why.endswith(UNSEEN) else rule.outcome
            ctx.annotations[f"kubegate.io/rule.{rule.id}"] = outcome
            if outcome == "deny":
                _refuse(self.metrics, "rules", "deny", rule.id)
                radius = await blast.radius_of(ctx, self.counter, self.limits)
                raise Denial(403, f"kubegate: refused by {text}" + (f". Blast radius: {radius.summary()}"
                                                                     if radius is not None else ""), "Forbidden")
            if outcome == "require-approval":
                ctx.approval_reasons.append(text)

    async def _narrowed(self, ctx: GateContext) -> bool:
        """Whether the request's selectors narrow what it acts on. A blank or whitespace selector
        selects everything in Go (`labels.Parse(" ")` is Everything), and a selector that selects
        as many objects as none does narrows nothing: both count as no selector (an empty collection
        has nothing a selector could spare, so there it counts as one). Cannot tell: no."""
        if not any(ctx.query.selector(k) for k in SELECTORS):
            return False
        try:
            narrowed = await lookups.count(ctx, self.counter, ctx.query)
            everything = await lookups.count(ctx, self.counter, ctx.query.without(*SELECTORS))
        except UpstreamError:
            return False
        return narrowed < everything or everything == 0

    async def _fires(self, rule: Rule, ctx: GateContext, identity: Identity, cluster: str,
                     info: RequestInfo) -> tuple[bool, str]:
        """(does the rule apply, a note). Anything it cannot tell counts as applying."""
        if rule.kubectl_command and ctx.request.headers.get("Kubectl-Command", "") != rule.kubectl_command:
            return False, ""
        if rule.webshell_session and not identity.session:
            return False, ""
        if rule.groups and not any(g in rule.groups for g in identity.groups):
            return False, ""
        if rule.no_selector and await self._narrowed(ctx):
            return False, ""
        note = ""
        if rule.consequence is not None:
            if rule.consequence.check == "below-disruption-budget" and info.subresource == "eviction":
                return False, ""  # the apiserver enforces disruption budgets for evictions itself (429)
            radius = await blast.radius_of(ctx, self.counter, self.limits)
            found = checks.findings(rule.consequence, radius) if radius is not None else []
            if not found:
                return False, ""
            note = f" [{'; '.join(found)}]"
            if radius is not None and not radius.complete and rule.outcome == "deny":
                # Not seen, only feared: a person decides rather than the rule refusing outright.
                return True, note + UNSEEN
        if rule.body:
            body = await judged(ctx, self.counter)
            if not body.readable:
                note = f" [the body could not be read ({body.error or 'no body'}), so the rule applies]"
            elif not all(_condition(c.op, body.obj or {}, c.path, c.value) for c in rule.body):
                return False, ""
        if rule.object_labels:
            wanted = dict(rule.object_labels)
            try:
                if info.verb == "deletecollection":
                    # A collection delete touches a protected object if any object it selects is one.
                    assert ctx.upstream is not None
                    hit = None
                    async for page in self.counter.pages(ctx.upstream, identity, info.path, ctx.query, ctx.request_id):
                        hit = next((o for o in page if _labelled(o, wanted)), None)
                        if hit is not None:
                            break
                    if hit is None:
                        return False, ""
                    note = f" [{((hit.get('metadata') or {}).get('name'))!r} is among the objects it deletes]"
                else:
                    # The object itself, also for its subresources (a Scale carries not its labels).
                    current = await lookups.live_object(ctx, self.counter,
                                                        info.object_path if info.subresource else ctx.path)
                    if not _labelled(current, wanted):
                        return False, ""
            except UpstreamError as e:
                if e.status == 404:
                    return False, ""
                note = f" [the object could not be read ({e.message}), so the rule applies]"
        if rule.more_than is not None:
            count, per = rule.more_than
            if count == 0:
                return True, note
            bucket = Bucket(f"rule/{rule.id}/cluster={cluster}", count, count / per, f"{count}/{per:g}s")
            try:
                within = (await self.store.take([bucket], 1, self.clock())).allowed
            except StoreUnavailable as e:
                return True, f" [the rule's counter is unavailable ({e}), so the rule applies]"
            if within:
                return False, ""
            note += f" (more than {count} in {per:g}s)"
        return True, note


def _labelled(obj: Any, wanted: dict[str, str]) -> bool:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {} if isinstance(obj, dict) else {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _condition(op: str, obj: Any, path: str, expected: Any) -> bool:
    """A body condition on OBJ; with `[*]` in PATH, it holds when it holds for any item (and
    `exists: false` when no item has the field)."""
    if "[*]" not in path:
        return _holds(op, bodies.lookup(obj, path), expected)
    values = bodies.lookup_all(obj, path)
    if op == "exists":
        return bool(values) == bool(expected)
    return any(_holds(op, value, expected) for value in values)


def _holds(op: str, actual: Any, expected: Any) -> bool:
    if op == "exists":
        return (not bodies.missing(actual)) == bool(expected)
    if bodies.missing(actual):
        return False
    if op == "equals":
        return bool(actual == expected)
    if op == "not_equals":
        return bool(actual != expected)
    return actual in expected  # "in"


# What the apiserver changes on every write: two reviews that differ only there ask the same thing.
_BOOKKEEPING = ("resourceVersion", "managedFields", "generation", "creationTimestamp", "uid")


def _without_bookkeeping(obj: Any) -> Any:
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        return obj
    meta = {k: v for k, v in obj["metadata"].items() if k not in _BOOKKEEPING}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


class WebhookGate:
    name = "webhooks"

    def __init__(self, policy: PolicySource, *, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None, client: UpstreamClient | None = None,
                 limits: ReadLimits = ReadLimits()) -> None:
        self.policy, self.clock, self.metrics, self.client, self.limits = policy, clock, metrics, client, limits
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def _ssl(self, hook: Webhook) -> ssl.SSLContext:
        ctx = self._contexts.get(hook.ca_file)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=hook.ca_file or None)
            self._contexts[hook.ca_file] = ctx
        return ctx

    def review(self, ctx: GateContext, identity: Identity, cluster: str, info: RequestInfo,
               body: bodies.Body) -> dict[str, Any]:
        return {"apiVersion": REVIEW_VERSION, "kind": "ChangeReview", "request": {
            "uid": ctx.request_id, "cluster": cluster, "user": identity.to_audit(),
            "userAgent": ctx.request.user_agent,
            "requestInfo": {"verb": info.verb, "apiGroup": info.api_group, "apiVersion": info.api_version,
                            "resource": info.resource, "subresource": info.subresource,
                            "namespace": info.namespace, "name": info.name},
            # As the apiserver will apply it: a delete's from its DeleteOptions (body first).
            "dryRun": ctx.delete_options.dry_run if ctx.delete_options is not None else ctx.query.dry_run,
            "bodyType": body.kind, "object": body.obj,
            "bodyError": body.error or None,
            # What the change takes with it, read from the cluster as the requester: counts and names.
            "blastRadius": ctx.blast_radius.to_json() if ctx.blast_radius is not None else None}}

    async def __call__(self, ctx: GateContext) -> None:
        identity, cluster, info = _ready(ctx)
        hooks = [hook for hook in self.policy().webhooks if hook.match.matches(cluster, info)]
        body = await judged(ctx, self.client) if hooks else bodies.NONE
        if hooks:
            await blast.radius_of(ctx, self.client, self.limits)
        for hook in hooks:
            review = self.review(ctx, identity, cluster, info, body)
            try:
                answer = await self._ask(hook, review)
            except ReviewTooLarge as e:
                _refuse(self.metrics, "webhooks", "too-large", hook.name)
                raise Denial(413, f"kubegate: {e}", "RequestEntityTooLarge") from None
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as e:
                problem = "timed out" if isinstance(e, asyncio.TimeoutError) else f"failed: {e}"
                ctx.annotations[f"kubegate.io/webhook.{hook.name}"] = f"error ({problem})"
                if hook.fails_closed(info):
                    _refuse(self.metrics, "webhooks", "failure", hook.name)
                    raise Denial(503, f"kubegate: risk webhook {hook.name} {problem}, and its failure policy "
                                      "refuses the change until it answers", "ServiceUnavailable") from None
                log.warning("risk webhook %s %s; its failure policy lets %s through", hook.name, problem, info.verb)
                continue
            reason = str(answer.get("reason") or "")
            ctx.annotations[f"kubegate.io/webhook.{hook.name}"] = \
                ("allowed" if answer["allowed"] else "denied") + (f": {reason}" if reason else "")
            if not answer["allowed"]:
                _refuse(self.metrics, "webhooks", "deny", hook.name)
                raise Denial(403, f"kubegate: risk webhook {hook.name} refused the change: {reason or 'no reason given'}",
                             "Forbidden")
            if answer.get("requiresApproval"):
                ctx.approval_reasons.append(f"risk webhook {hook.name} asks for approval"
                                            + (f": {reason}" if reason else ""))

    async def verify(self, ctx: GateContext, name: str, rollout: dict[str, Any]) -> tuple[bool, str]:
        """A rollout stage's verification: risk webhook NAME asked about this request, its
        ChangeReview carrying `rollout` (which stage's run is to be verified, for which target)."""
        identity, cluster, info = _ready(ctx)
        hook = next((h for h in self.policy().webhooks if h.name == name), None)
        if hook is None:
            raise ValueError(f"no risk webhook named {name!r}")
        review = self.review(ctx, identity, cluster, info, await judged(ctx, self.client))
        review["request"]["rollout"] = rollout
        answer = await self._ask(hook, review)
        return bool(answer["allowed"]), str(answer.get("reason") or "")

    async def _ask(self, hook: Webhook, review: dict[str, Any]) -> dict[str, Any]:
        # Serialising a large object takes a while: off the event loop, so other requests go on.
        payload, key = await asyncio.to_thread(_serialise, review, hook.cache_seconds > 0)
        if len(payload) > hook.max_review_bytes:
            raise ReviewTooLarge(f"the change is too large for risk webhook {hook.name} to review ({len(payload)} "
                                 f"bytes, at most {hook.max_review_bytes}); it was not sent, and the change is refused")
        if key:
            hit = self._cache.get((hook.name, key))
            if hit is not None and self.clock() - hit[0] < hook.cache_seconds:
                return hit[1]
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(hook.url, data=payload, headers={"Content-Type": "application/json"},
                                      ssl=self._ssl(hook),
                                      timeout=aiohttp.ClientTimeout(total=hook.timeout_seconds)) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                raise ValueError(f"the answer is not a {REVIEW_VERSION} ChangeReview (not even JSON)") from None
        answer = _valid_answer(data, review["request"]["uid"])
        if key:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[(hook.name, key)] = (self.clock(), answer)
        return answer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class ReviewTooLarge(Exception):
    pass


def _serialise(review: dict[str, Any], cache_key: bool) -> tuple[bytes, str]:
    """(the review as sent, its cache key: what it asks, without the uid and write bookkeeping)."""
    payload = json.dumps(review, default=str).encode()
    if not cache_key:
        return payload, ""
    stable = {**review["request"], "uid": "", "object": _without_bookkeeping(review["request"]["object"])}
    return payload, hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


def _valid_answer(data: Any, uid: str) -> dict[str, Any]:
    """The `response` of a ChangeReview answer, or ValueError saying what is wrong with it."""
    if not isinstance(data, dict) or data.get("apiVersion") != REVIEW_VERSION or data.get("kind") != "ChangeReview":
        raise ValueError(f"the answer is not a {REVIEW_VERSION} ChangeReview")
    response = data.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("allowed"), bool):
        raise ValueError("the answer has no response.allowed (a boolean)")
    if response.get("uid") != uid:
        raise ValueError("the answer's response.uid is not the review's request.uid")
    if not isinstance(response.get("reason", ""), str) or not isinstance(response.get("requiresApproval", False), bool):
        raise ValueError("response.reason must be a string and response.requiresApproval a boolean")
    return response


class ApprovalGate:
    name = "approvals"

    def __init__(self, approvals: ApprovalService, *, public_url: str, metrics: Metrics | None = None,
                 client: UpstreamClient | None = None, limits: ReadLimits = ReadLimits()) -> None:
        self.approvals, self.public_url, self.metrics, self.client = approvals, public_url, metrics, client
        self.limits = limits

    async def _request(self, ctx: GateContext) -> Request:
        """The canonical request the ticket binds, with what the approver needs to read it."""
        body = _body(ctx)
        result = await judged(ctx, self.client)
        info = ctx.info
        resource, subresource = (info.resource, info.subresource) if info else ("", "")
        changes = (patches.changes(ctx.patched_live or {}, result.obj)
                   if body.kind in patches.PATCH_KINDS and result.readable else [])
        radius = await blast.radius_of(ctx, self.client, self.limits, fields=True)
        return Request(ctx.request.method, ctx.path, ctx.query.encode(), ctx.request.headers.get("Content-Type", ""),
                       ctx.request.body, preview(ctx.request.body, body.data if body.data is not None else body.obj,
                                                 resource, subresource),
                       redacted_changes(changes, resource, subresource),
                       radius.to_json() if radius is not None else None)

    async def __call__(self, ctx: GateContext) -> None:
        if not ctx.approval_reasons:
            return
        identity, cluster, info = _ready(ctx)
        kind = "break-glass" if ctx.break_glass else "change"
        if ctx.preview:  # `kubegate preview`: say what it would need; open nothing
            radius = await blast.radius_of(ctx, self.client, self.limits, fields=True)
            raise Denial(403, f"kubegate preview: this change would need {'break-glass ' if ctx.break_glass else ''}"
                              f"approval: {'; '.join(ctx.approval_reasons)}."
                              + (f" Blast radius: {radius.summary()}." if radius is not None else "")
                              + " No ticket was opened (a preview); nothing was changed", "Forbidden")
        try:
            use, ticket = await self.approvals.find_or_open(identity, cluster, info, await self._request(ctx), kind,
                                                            ctx.approval_reasons)
        except StoreUnavailable as e:
            _refuse(self.metrics, "approvals", "store-unavailable", kind)
            raise Denial(503, f"kubegate: this change needs approval ({'; '.join(ctx.approval_reasons)}), and "
                              f"approvals are unavailable: {e}", "ServiceUnavailable") from None
        if use is not None:
            ctx.annotations["kubegate.io/approval"] = f"{ticket.id} used"
            ctx.commits.append(lambda: self._use(use))
            return
        ctx.annotations["kubegate.io/approval"] = f"{ticket.id} pending"
        _refuse(self.metrics, "approvals", "pending", kind)
        summary = f" Blast radius: {ctx.blast_radius.summary()}." if ctx.blast_radius is not None else ""
        raise Denial(403, f"kubegate: this change needs {'break-glass ' if kind == 'break-glass' else ''}approval: "
                          f"{'; '.join(ctx.approval_reasons)}.{summary} Approval ticket {ticket.id} is open: someone else "
                          f"who may approve runs `kubegate approvals approve {ticket.id}` (or POST "
                          f"{self.public_url}/kubegate/v1/approvals/{ticket.id}/approve); then retry exactly this "
                          "request, once, within the hour", "Forbidden")

    @staticmethod
    async def _use(use: Callable[[], Awaitable[Any]]) -> None:
        try:
            await use()
        except ApprovalError as e:
            raise Denial(e.code, f"kubegate: {e.message}") from None
        except StoreUnavailable as e:
            raise Denial(503, f"kubegate: the approval cannot be used now: {e}", "ServiceUnavailable") from None


class ApprovalApi:
    """/kubegate/v1/approvals: list, show, approve, deny tickets; /kubegate/v1/freeze: what is frozen."""

    name = "approval-api"
    PREFIX = "/kubegate/v1/approvals"
    FREEZE = "/kubegate/v1/freeze"

    def __init__(self, approvals: ApprovalService, policy: PolicySource, clock: Callable[[], float] = time.time) -> None:
        self.approvals, self.policy, self.clock = approvals, policy, clock

    async def __call__(self, ctx: GateContext) -> None:
        path, method = ctx.request.own_path, ctx.request.method
        if path == self.FREEZE and method == "GET":
            raise Answer(200, "", body={"kind": "FreezeStatus", "now": self.clock(),
                                        "windows": freeze_status(self.policy().freeze, self.clock())})
        if not (path == self.PREFIX or path.startswith(self.PREFIX + "/")):
            return
        assert ctx.identity is not None
        parts = [p for p in path[len(self.PREFIX):].split("/") if p]
        try:
            if not parts and method == "GET":
                visible = [t for t in await self.approvals.all() if self.approvals.may_see(ctx.identity, t)]
                raise Answer(200, "", body={"kind": "ApprovalTicketList", "items": [ticket_json(t) for t in visible]})
            if len(parts) == 1 and method == "GET":
                ticket = await self.approvals.get(parts[0])
                if ticket is None or not self.approvals.may_see(ctx.identity, ticket):
                    raise ApprovalError(404, f"no approval ticket {parts[0]!r}")
                raise Answer(200, "", body=ticket_json(ticket))
            if len(parts) == 2 and parts[1] == "withdraw" and method == "POST":
                ctx.annotations["kubegate.io/approval"] = parts[0]
                raise Answer(200, "", body=ticket_json(await self.approvals.withdraw(parts[0], ctx.identity)))
            if len(parts) == 2 and parts[1] in ("approve", "deny") and method == "POST":
                ctx.annotations["kubegate.io/approval"] = parts[0]
                decided = await self.approvals.decide(parts[0], ctx.identity, parts[1] == "approve")
                raise Answer(200, "", body=ticket_json(decided))
        except ApprovalError as e:
            raise Denial(e.code, f"kubegate: {e.message}") from None
        except StoreUnavailable as e:
            raise Denial(503, f"kubegate: approvals are unavailable: {e}", "ServiceUnavailable") from None
        raise Denial(404, f"kubegate: no such approvals API call: {method} {path}", "NotFound")

