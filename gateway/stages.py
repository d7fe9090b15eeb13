"""The request path: an ordered list of stages, each able to end a request with a Denial.

Read `default_stages` top to bottom to learn what happens to a request. A stage is any object
with a `name` and an async `__call__(ctx)`; it refuses by raising `Denial`, and anything else it
raises becomes a 500 that forwards nothing (see pipeline.run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Protocol

from .authz.access import AccessError, AccessRequest, AccessService
import jwt

from .identity.authn import Authenticator, unauthorized
from .identity.sessions import SessionError, SessionService
from .authz import reviews
from .authz.authorizer import PolicyHolder, describe_refusal
from .clusters.client import UpstreamClient, UpstreamError
from .context import OWN_API, GateContext
from .errors import Answer, Denial
from .request import bodies, deleteoptions
from .request.info import RequestInfo, classify
from .request.query import Query
from .identity.revocations import Revocation, RevocationError, Revocations
from .metrics import Metrics
from .overload import Admission, Overloaded
from .state.store import StoreUnavailable
from .clusters.upstreams import Upstreams


class Stage(Protocol):
    name: str

    async def __call__(self, ctx: GateContext) -> None: ...


class Ingress:
    """No request is served while its audit event could not be written; none whose header block a
    proxy must not pass on (RFC 9112 §5.2: a header folded over lines, obs-fold, is refused)."""

    name = "ingress"

    def __init__(self, audit_ready: "AuditReady") -> None:
        self.audit_ready = audit_ready

    async def __call__(self, ctx: GateContext) -> None:
        if not self.audit_ready():
            raise Denial(503, "kubegate: the audit log cannot be written, so no request is served "
                              "until it can; tell the gateway's operators", "ServiceUnavailable", retry_after=5)
        # The HTTP/1 parser keeps a folded header's continuation lines in its value (CR LF, then
        # the line): passed on, the cluster would read them as it chooses. Refused here, whoever sent it.
        folded = sorted({name.lower() for name, value in ctx.request.headers.items()
                         if "\r" in value or "\n" in value})
        if folded:
            raise Denial(400, f"kubegate: header {', '.join(folded)} is folded over several lines (obs-fold), which "
                              "HTTP/1.1 deprecates and a proxy must not pass on; send each header on one line. "
                              "Nothing was forwarded", "BadRequest")


class NoImpersonation:
    """Client impersonation is refused (the gateway alone impersonates). After authentication, so
    the audit event names who tried."""

    name = "impersonation"

    async def __call__(self, ctx: GateContext) -> None:
        smuggled = sorted({k.lower() for k in ctx.request.headers if k.lower().startswith("impersonate-")})
        if smuggled:
            raise Denial(403, f"kubegate: impersonation headers ({', '.join(smuggled)}) are not accepted: "
                              "the gateway acts as you by itself; drop --as/--as-group", "Forbidden")


class AuditReady(Protocol):
    def __call__(self) -> bool: ...


class AuditCapacity:
    """While the audit center's spool is full, changes are refused rather than made unrecorded
    there (reads go on: the spool's last room is theirs)."""

    name = "audit-capacity"

    def __init__(self, accepts_changes: AuditReady) -> None:
        self.accepts_changes = accepts_changes

    async def __call__(self, ctx: GateContext) -> None:
        if ctx.info is not None and (ctx.info.mutating or ctx.info.subresource == "proxy") \
                and not self.accepts_changes():
            raise Denial(503, "kubegate: the audit center has not taken events for a while and the spool is "
                              "full, so changes are refused until it does; reads go on", "ServiceUnavailable",
                         retry_after=30)


class Authenticate:
    name = "authn"

    def __init__(self, authenticator: Authenticator, sessions: SessionService | None = None,
                 revocations: Revocations | None = None) -> None:
        self.authenticator, self.sessions, self.revocations = authenticator, sessions, revocations

    async def __call__(self, ctx: GateContext) -> None:
        presented = await self.authenticator.authenticate_presented(ctx.request.headers.get("Authorization"))
        identity = presented.identity
        ctx.credential_expires, ctx.credential_id, ctx.credential_issued = (presented.expires, presented.token_id,
                                                                            presented.issued_at)
        if presented.token_id:
            ctx.annotations["kubegate.io/token-id"] = presented.token_id  # what `kubegate token revoke --id` takes
        if self.revocations is not None and (why := self.revocations.refused(identity.user, presented.token_id,
                                                                               presented.issued_at)):
            raise unauthorized(why, "revoked")
        if identity.session and self.sessions is not None:
            try:
                ended = await self.sessions.ended(identity.session)
            except StoreUnavailable as e:  # cannot tell: the token is not taken
                raise Denial(503, f"kubegate: cannot check the session now: {e}", "ServiceUnavailable",
                             retry_after=5) from None
            if ended:
                raise unauthorized(f"session {identity.session} has ended (logged out); log in again", "revoked")
        ctx.identity = identity


MAX_API_BODY = 64 * 1024  # kubegate's own API takes small JSON documents


def api_parts(ctx: GateContext, prefix: str) -> list[str] | None:
    """The path segments after PREFIX of one of kubegate's own APIs, or None for another path."""
    path = ctx.request.own_path
    if not (path == prefix or path.startswith(prefix + "/")):
        return None
    assert ctx.identity is not None  # kubegate's APIs run after authentication
    return path[len(prefix):].strip("/").split("/") if path != prefix else []


class AccessApi:
    """kubegate's own API for time-bound access requests, under /kubegate/v1/accessrequests."""

    name = "access-api"
    PREFIX = "/kubegate/v1/accessrequests"

    def __init__(self, access: AccessService) -> None:
        self.access = access

    async def __call__(self, ctx: GateContext) -> None:
        parts = api_parts(ctx, self.PREFIX)
        if parts is None:
            return
        assert ctx.identity is not None
        path, method = ctx.request.own_path, ctx.request.method
        try:
            if not parts and method == "GET":
                visible = [a for a in await self.access.all() if self.access.may_see(ctx.identity, a)]
                raise Answer(200, "", body={"kind": "AccessRequestList", "items": [_access_json(a) for a in visible]})
            if not parts and method == "POST":
                if len(ctx.request.body) > MAX_API_BODY:
                    raise AccessError(413, f"an access request body is at most {MAX_API_BODY} bytes")
                try:
                    spec = json.loads(ctx.request.body or b"{}")
                    req = await self.access.request(ctx.identity, str(spec["role"]), str(spec["cluster"]),
                                              str(spec.get("namespace", "*")), int(spec["durationSeconds"]),
                                              str(spec.get("reason", "")))
                except (ValueError, KeyError, TypeError) as e:
                    raise AccessError(400, f"a request needs role, cluster, durationSeconds and reason ({e})") from e
                ctx.annotations["kubegate.io/access-request"] = req.id
                raise Answer(201, "", body=_access_json(req))
            if len(parts) == 1 and method == "GET":
                found = await self.access.get(parts[0])
                if found is None or not self.access.may_see(ctx.identity, found):
                    raise AccessError(404, f"no access request {parts[0]!r}")
                raise Answer(200, "", body=_access_json(found))
            if len(parts) == 2 and parts[1] in ("approve", "deny") and method == "POST":
                act = self.access.approve if parts[1] == "approve" else self.access.deny
                ctx.annotations["kubegate.io/access-request"] = parts[0]
                raise Answer(200, "", body=_access_json(await act(parts[0], ctx.identity)))
        except AccessError as e:
            raise Denial(e.code, f"kubegate: {e.message}", retry_after=60 if e.code == 429 else None) from None
        except StoreUnavailable as e:
            raise Denial(503, f"kubegate: access requests are unavailable: {e}", "ServiceUnavailable",
                         retry_after=5) from None
        raise Denial(404, f"kubegate: no such access API call: {method} {path}", "NotFound")


class TokensApi:
    """/kubegate/v1/tokens/revocations: GET the revocations in force, POST one ({id|user, reason,
    expires}); who may is policy (`tokenrevocations.kubegate.io`, create and list)."""

    name = "tokens-api"
    PREFIX = "/kubegate/v1/tokens/revocations"

    def __init__(self, revocations: Revocations, holder: PolicyHolder, audit: Callable[[Revocation], None]) -> None:
        self.revocations, self.holder, self.audit = revocations, holder, audit

    async def __call__(self, ctx: GateContext) -> None:
        parts = api_parts(ctx, self.PREFIX)
        if parts is None:
            return
        assert ctx.identity is not None
        method = ctx.request.method
        verb = {"GET": "list", "POST": "create"}.get(method, "")
        if parts or not verb:
            raise Denial(404, f"kubegate: no such tokens API call: {method} {ctx.request.own_path}", "NotFound")
        decision = self.holder.decide_own(ctx.identity, "*", verb, "tokenrevocations")
        if not decision.allowed:
            raise Denial(403, f'kubegate: user "{ctx.identity.user}" may not {verb} token revocations '
                              f"({decision.reason})", "Forbidden")
        try:
            if method == "GET":
                items = [r.to_json() for r in await self.revocations.all()]
                raise Answer(200, "", body={"kind": "TokenRevocationList", "items": items})
            try:
                spec = json.loads(ctx.request.body[:MAX_API_BODY] or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("not an object")
                record = await self.revocations.revoke(by=ctx.identity.user, reason=str(spec.get("reason", "")),
                                                       token_id=str(spec.get("id", "")), user=str(spec.get("user", "")),
                                                       expires=float(spec.get("expires", 0) or 0))
            except (ValueError, TypeError) as e:
                raise RevocationError(400, f"a revocation is {{\"id\" or \"user\", \"reason\", \"expires\"}} ({e})") \
                    from e
            self.audit(record)
            ctx.annotations["kubegate.io/token-revoked"] = record.key
            raise Answer(201, "", body=record.to_json())
        except RevocationError as e:
            raise Denial(e.code, f"kubegate: {e.message}") from None
        except StoreUnavailable as e:
            raise Denial(503, f"kubegate: revocations are unavailable: {e}", "ServiceUnavailable") from None


class SessionsApi:
    """kubegate's own API for session tokens, under /kubegate/v1/sessions (identity.sessions)."""

    name = "sessions-api"
    PREFIX = "/kubegate/v1/sessions"

    def __init__(self, sessions: SessionService) -> None:
        self.sessions = sessions

    async def __call__(self, ctx: GateContext) -> None:
        parts = api_parts(ctx, self.PREFIX)
        if parts is None:
            return
        assert ctx.identity is not None
        path, method = ctx.request.own_path, ctx.request.method
        try:
            if not parts and method == "POST":
                try:
                    spec = json.loads(ctx.request.body[:MAX_API_BODY] or b"{}")
                    ttl = int(spec.get("ttlSeconds", 3600))
                except (ValueError, TypeError, AttributeError) as e:
                    raise SessionError(400, f"a session request is {{\"ttlSeconds\": N}} ({e})") from e
                _, _, bearer = ctx.request.headers.get("Authorization", "").partition(" ")
                expires = float(jwt.decode(bearer.strip(), options={"verify_signature": False}).get("exp") or 0)
                try:
                    session = await self.sessions.mint(ctx.identity, expires, ttl)
                except ValueError as e:
                    raise SessionError(400, str(e)) from e
                ctx.annotations["kubegate.io/session-started"] = str(session["id"])
                raise Answer(201, "", body=session)
            if len(parts) == 1 and method == "DELETE":
                await self.sessions.end(parts[0], ctx.identity)
                ctx.annotations["kubegate.io/session-ended"] = parts[0]
                raise Answer(200, "", body={"kind": "Session", "id": parts[0], "ended": True})
        except SessionError as e:
            raise Denial(e.code, f"kubegate: {e.message}") from None
        except StoreUnavailable as e:
            raise Denial(503, f"kubegate: sessions are unavailable: {e}", "ServiceUnavailable", retry_after=5) from None
        raise Denial(404, f"kubegate: no such sessions API call: {method} {path}", "NotFound")


def _access_json(a: AccessRequest) -> dict[str, object]:
    return {"kind": "AccessRequest", "id": a.id, "user": a.user, "role": a.role, "cluster": a.cluster,
            "namespace": a.namespace, "reason": a.reason, "durationSeconds": a.duration_seconds,
            "status": a.status, "decidedBy": a.decided_by, "expiresAt": a.expires_at or None}


class Commit:
    """The last stage: take what the gates only checked (budget tokens, an approved ticket)."""

    name = "commit"

    async def __call__(self, ctx: GateContext) -> None:
        for commit in ctx.commits:
            await commit()


class OwnApiEnd:
    """What is under /kubegate/ and none of kubegate's APIs answered is no API at all: 404 here, never
    forwarded (a cluster has no /kubegate, and a mistyped call must not reach one)."""

    name = "own-api"

    async def __call__(self, ctx: GateContext) -> None:
        path = ctx.request.own_path
        if path == OWN_API or path.startswith(OWN_API + "/"):
            raise Denial(404, f"kubegate: no such kubegate API call: {ctx.request.method} {path} (kubegate's API: "
                              "/kubegate/v1/sessions, accessrequests, approvals, breakers, freeze); nothing was "
                              "forwarded", "NotFound")


class Route:
    """Pick the cluster: /clusters/<name>/... or the default cluster."""

    name = "route"

    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams

    async def __call__(self, ctx: GateContext) -> None:
        ctx.upstream, ctx.path = self.upstreams.route(ctx.request.raw_path)
        ctx.annotations["kubegate.io/cluster"] = ctx.upstream.name


class Classify:
    """Read the request once, as kube-apiserver will: query (Go's rules), verb, DeleteOptions."""

    name = "classify"

    async def __call__(self, ctx: GateContext) -> None:
        ctx.query = Query.parse(ctx.request.query)
        ctx.info = info = classify(ctx.request.method, ctx.path, ctx.query)
        command = ctx.request.headers.get("Kubectl-Command", "")
        if command and info.mutating:
            # What rules may match on (`kubectl_command`), kept so that `policy replay` can judge it again.
            ctx.annotations["kubegate.io/kubectl-command"] = command[:200]
        content_type = ctx.request.headers.get("Content-Type")
        encoding = ctx.request.headers.get("Content-Encoding", "identity").strip().lower()
        if ctx.request.body and encoding != "identity":
            raise Denial(415, f"kubegate: request bodies with Content-Encoding {encoding!r} are not accepted; "
                              "the request was not forwarded", "UnsupportedMediaType")
        body = bodies.NONE
        if info.is_resource and info.mutating and ctx.request.body:
            # Read once, as the apiserver's Go decoders read it; gates reuse this reading.
            ctx.body_view = body = bodies.read(content_type, ctx.request.body)
            if body.go_refusal:
                raise Denial(400, f"kubegate: {body.error}; the request was not forwarded", "BadRequest")
        if info.is_resource and info.verb in ("delete", "deletecollection") and not info.subresource:
            ctx.delete_options = deleteoptions.for_delete(ctx.query, body)
        elif info.is_resource and info.verb == "create" and info.subresource == "eviction":
            ctx.delete_options = deleteoptions.for_eviction(ctx.query, body)
        else:
            deleteoptions.from_query(ctx.query)  # dryRun and propagationPolicy values are checked for all


def long_running_kind(info: RequestInfo) -> str:
    """Which per-user cap a long-running request counts against (overload.py)."""
    if info.verb == "watch":
        return "watch"
    if info.subresource in ("exec", "attach", "portforward"):
        return "session"
    return "stream"


class Admit:
    """Overload protection: a seat to be worked on, in the user's fair turn, or 429 (overload.py)."""

    name = "overload"

    def __init__(self, admission: Admission, metrics: Metrics | None = None) -> None:
        self.admission, self.metrics = admission, metrics
        if metrics is not None:
            metrics.overload_seats.labels("ordinary").set_function(lambda: admission.inflight)
            metrics.overload_seats.labels("long-running").set_function(lambda: admission.long_running)
            metrics.overload_queued.set_function(lambda: admission.queued)

    async def __call__(self, ctx: GateContext) -> None:
        if ctx.identity is None or ctx.info is None:
            raise Denial(500, "kubegate: admission ran before authentication and classification", "InternalError")
        try:
            seat = await self.admission.admit(ctx.identity.user, ctx.info.long_running, long_running_kind(ctx.info))
        except Overloaded as e:
            if self.metrics is not None:
                self.metrics.overload_rejected.labels(e.reason).inc()
            raise Denial(429, e.message, "TooManyRequests", retry_after=e.retry_after) from None
        ctx.seat = seat
        if seat.waited:
            ctx.annotations["kubegate.io/queue-wait"] = f"{seat.waited:.3f}s"
            ctx.annotations["kubegate.io/admitted-after"] = str(seat.admitted_after)
            if self.metrics is not None:
                self.metrics.overload_wait.observe(seat.waited)


class Authorize:
    """Least privilege: the policy in force must allow (identity, cluster, namespace, object, verb)."""

    name = "authz"

    def __init__(self, holder: PolicyHolder, access: AccessService, metrics: Metrics | None = None) -> None:
        self.holder, self.access, self.metrics = holder, access, metrics

    async def __call__(self, ctx: GateContext) -> None:
        if ctx.identity is None or ctx.info is None or ctx.upstream is None:
            raise Denial(500, "kubegate: authorization ran before authentication and routing", "InternalError")
        authorizer = self.holder.current
        await self.access.sync(authorizer)  # approved grants in, expired ones out
        decision = authorizer.decide(ctx.identity, ctx.upstream.name, ctx.info)
        ctx.annotations["kubegate.io/authz"] = decision.reason
        ctx.annotations["kubegate.io/authz-rule"] = decision.rule.id if decision.rule else "none"
        ctx.annotations["kubegate.io/policy-revision"] = authorizer.policy.revision
        # The keys kube-apiserver's own authorizers write, so audit tooling reads kubegate's verdict.
        ctx.annotations["authorization.k8s.io/decision"] = "allow" if decision.allowed else "forbid"
        ctx.annotations["authorization.k8s.io/reason"] = decision.reason
        if not decision.allowed:
            if self.metrics is not None:  # the most common refusal, beside every risk gate's
                self.metrics.gate_refusals.labels("authz", "deny" if decision.rule else "no-rule",
                                                  decision.rule.id if decision.rule else "no-rule").inc()
            raise Denial(403, describe_refusal(ctx.identity.user, ctx.upstream.name, ctx.info, decision),
                         "Forbidden")


class SelfReviews:
    """`kubectl auth can-i` (SelfSubjectAccessReview, SelfSubjectRulesReview) answered from kubegate's
    policy together with the cluster's own answer, never from the cluster's RBAC alone."""

    name = "can-i"

    def __init__(self, holder: PolicyHolder, client: UpstreamClient, access: AccessService,
                 later_gates: LaterGates) -> None:
        self.holder, self.client, self.access, self.later_gates = holder, client, access, later_gates

    async def __call__(self, ctx: GateContext) -> None:
        info, identity, upstream = ctx.info, ctx.identity, ctx.upstream
        if info is None or identity is None or upstream is None or not reviews.is_review(info):
            return
        body = ctx.body_view
        review = body.obj if body is not None and body.readable else None
        if not isinstance(review, dict):
            raise Denial(400, "kubegate: the review's body cannot be read", "BadRequest")
        spec = review.get("spec") or {}
        try:
            theirs = await self.client.create(upstream, identity, ctx.path, {
                "apiVersion": "authorization.k8s.io/v1", "kind": review.get("kind", ""), "spec": spec}, ctx.request_id)
        except UpstreamError as e:
            if e.status != 403:
                raise Denial(503 if e.status >= 500 or e.status < 400 else e.status,
                             f"kubegate: the cluster did not answer the review: {e.message}") from None
            theirs = {"status": {"allowed": False, "reason": f"the cluster refused the review: {e.message}"}}
        cluster_status = theirs.get("status") or {} if isinstance(theirs, dict) else {}
        authorizer = self.holder.current
        await self.access.sync(authorizer)
        try:
            if info.resource == reviews.ACCESS:
                asked = reviews.review_info(spec)
                verdict = reviews.access(authorizer, identity, upstream.name, asked, cluster_status,
                                         self.later_gates(upstream.name, asked))
                status: dict[str, object] = {"allowed": verdict.allowed, "reason": verdict.reason}
                if not verdict.allowed:
                    status["denied"] = True
            else:
                status = reviews.rules(authorizer, identity, upstream.name, str(spec.get("namespace") or ""),
                                       cluster_status)
        except reviews.ReviewError as e:
            raise Denial(400, f"kubegate: {e}", "BadRequest") from None
        ctx.annotations["kubegate.io/can-i"] = "answered by kubegate and the cluster"
        raise Answer(201, "", body={"apiVersion": "authorization.k8s.io/v1", "kind": review.get("kind", ""),
                                    "metadata": {"creationTimestamp": None}, "spec": spec, "status": status})


class LaterGates(Protocol):
    def __call__(self, cluster: str, info: RequestInfo) -> list[str]: ...


@dataclass
class GateStages:
    """The gates built by the server (they share its store, clock and metrics), in request order."""

    api_limits: Stage
    breaker_api: Stage
    approval_api: Stage
    freeze: Stage
    rules: Stage
    limits: Stage
    webhooks: Stage
    approvals: Stage
    preview_prefix: Stage | None = None  # /kubegate/preview/<id>/...: `kubegate preview`
    preview: Stage | None = None
    preview_api: Stage | None = None
    brake: Stage | None = None  # the emergency brake: changes in its scope need break-glass
    brake_api: Stage | None = None
    health: Stage | None = None  # alert-aware gating: a firing alert holds changes to its cluster
    rollout: Stage | None = None  # rollout order: a new pod template runs in the earlier stages first


def default_stages(*, audit_ready: AuditReady, authenticator: Authenticator, upstreams: Upstreams,
                   policy: PolicyHolder, access: AccessService, gates: GateStages, can_i: Stage | None = None,
                   audit_accepts_changes: AuditReady = lambda: True,
                   sessions: SessionService | None = None, admission: Stage | None = None,
                   metrics: Metrics | None = None, revocations: Revocations | None = None,
                   tokens_api: Stage | None = None) -> list[Stage]:
    return [
        Ingress(audit_ready),         # the audit log is writable, or 503
        *([gates.preview_prefix] if gates.preview_prefix else []),  # /kubegate/preview/<id>/...: a preview
        Authenticate(authenticator, sessions, revocations),  # bearer JWT → Identity (not ended, not revoked), or 401
        NoImpersonation(),            # no client Impersonate-* headers (403)
        gates.api_limits,             # /kubegate/v1/...: per-user QPS on kubegate's own API (429)
        *([SessionsApi(sessions)] if sessions else []),  # /kubegate/v1/sessions: session tokens minted, ended
        AccessApi(access),            # /kubegate/v1/accessrequests: answered here, never forwarded
        *([tokens_api] if tokens_api else []),  # /kubegate/v1/tokens/revocations: revoke a token or a user's
        gates.breaker_api,            # /kubegate/v1/breakers: list and reset circuit breakers
        gates.approval_api,           # /kubegate/v1/approvals, /kubegate/v1/freeze
        *([gates.preview_api] if gates.preview_api else []),  # /kubegate/v1/previews/<id>: a preview's report
        *([gates.brake_api] if gates.brake_api else []),  # /kubegate/v1/brakes: pull, release, status
        OwnApiEnd(),                  # anything else under /kubegate/: 404, never forwarded
        Route(upstreams),             # /clusters/<name>/ → cluster, or 404
        Classify(),                   # method + path + query → RequestInfo, or 400
        *([gates.preview] if gates.preview else []),  # in a preview: mutations become dry runs, and are reported
        *([admission] if admission else []),  # a seat in the user's fair turn (overload protection), or 429
        AuditCapacity(audit_accepts_changes),  # the audit center's spool is full: changes 503
        Authorize(policy, access, metrics),  # Casbin policy (+ approved grants) allows it, or 403 naming the rule
        *([can_i] if can_i else []),  # kubectl auth can-i: answered by kubegate's policy and the cluster
        *([gates.brake] if gates.brake else []),  # an emergency brake on: a change in its scope needs break-glass
        *([gates.health] if gates.health else []),  # a matching alert firing in the cluster: break-glass (or 403)
        gates.freeze,                 # change-freeze windows: a mutation inside one needs break-glass approval
        gates.rules,                  # change-risk rules: deny (403), require approval, or annotate
        *([gates.rollout] if gates.rollout else []),  # rollout order across clusters: earlier stages first
        gates.limits,                 # QPS limits (429 + Retry-After), delete budgets and breakers (429)
        gates.webhooks,               # business-side risk webhooks: their "no" is a 403 with their reason
        gates.approvals,              # approval needed: 403 with a ticket; an approved identical retry passes once
        Commit(),                     # only now: delete budgets charged, approved ticket used
    ]
