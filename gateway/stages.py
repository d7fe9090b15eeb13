"""The request path: an ordered list of stages, each able to end a request with a Denial.

Read `default_stages` top to bottom to learn what happens to a request. A stage is any object
with a `name` and an async `__call__(ctx)`; it refuses by raising `Denial`, and anything else it
raises becomes a 500 that forwards nothing (see pipeline.run).
"""

from __future__ import annotations

from typing import Protocol

from .authn import Authenticator
from .authz import PolicyHolder, describe_refusal
from .context import GateContext
from .errors import Denial
from .requestinfo import classify
from .upstreams import Upstreams


class Stage(Protocol):
    name: str

    async def __call__(self, ctx: GateContext) -> None: ...


class Ingress:
    """Refuse what must never travel upstream, before anything else looks at the request."""

    name = "ingress"

    def __init__(self, audit_ready: "AuditReady") -> None:
        self.audit_ready = audit_ready

    async def __call__(self, ctx: GateContext) -> None:
        if not self.audit_ready():
            raise Denial(503, "kubegate: the audit log cannot be written, so no request is served "
                              "until it can; tell the gateway's operators", "ServiceUnavailable", retry_after=5)
        smuggled = sorted({k.lower() for k in ctx.request.headers if k.lower().startswith("impersonate-")})
        if smuggled:
            raise Denial(403, f"kubegate: impersonation headers ({', '.join(smuggled)}) are not accepted: "
                              "the gateway acts as you by itself; drop --as/--as-group", "Forbidden")


class AuditReady(Protocol):
    def __call__(self) -> bool: ...


class Authenticate:
    name = "authn"

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    async def __call__(self, ctx: GateContext) -> None:
        ctx.identity = await self.authenticator.authenticate(ctx.request.headers.get("Authorization"))


class Route:
    """Pick the cluster: /clusters/<name>/... or the default cluster."""

    name = "route"

    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams

    async def __call__(self, ctx: GateContext) -> None:
        ctx.upstream, ctx.path = self.upstreams.route(ctx.request.raw_path)
        ctx.annotations["kubegate.io/cluster"] = ctx.upstream.name


class Classify:
    name = "classify"

    async def __call__(self, ctx: GateContext) -> None:
        ctx.info = classify(ctx.request.method, ctx.path, ctx.request.query)


class Authorize:
    """Least privilege: the policy in force must allow (identity, cluster, namespace, object, verb)."""

    name = "authz"

    def __init__(self, holder: PolicyHolder) -> None:
        self.holder = holder

    async def __call__(self, ctx: GateContext) -> None:
        if ctx.identity is None or ctx.info is None or ctx.upstream is None:
            raise Denial(500, "kubegate: authorization ran before authentication and routing", "InternalError")
        decision = self.holder.current.decide(ctx.identity, ctx.upstream.name, ctx.info)
        ctx.annotations["kubegate.io/authz"] = decision.reason
        if not decision.allowed:
            raise Denial(403, describe_refusal(ctx.identity.user, ctx.upstream.name, ctx.info, decision),
                         "Forbidden")


def default_stages(*, audit_ready: AuditReady, authenticator: Authenticator, upstreams: Upstreams,
                   policy: PolicyHolder) -> list[Stage]:
    return [
        Ingress(audit_ready),         # audit writable; no smuggled Impersonate-* headers
        Authenticate(authenticator),  # bearer JWT → Identity, or 401
        Route(upstreams),             # /clusters/<name>/ → cluster, or 404
        Classify(),                   # method + path + query → RequestInfo, or 400
        Authorize(policy),            # Casbin policy allows it, or 403 naming the rule situation
        # the risk gates join here, in this order: freeze, rules, limits, webhooks, approvals.
    ]
