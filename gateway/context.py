"""Per-request state: one typed object, reached through one accessor."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, MutableMapping

from multidict import CIMultiDict

from .errors import Answer, Denial
from .identity.identity import Identity
from .request.deleteoptions import DeleteOptions
from .request.info import RequestInfo
from .request.query import Query
from .clusters.upstreams import Upstream

METADATA_KEY = "kubegate"


OWN_API = "/kubegate"  # kubegate's own API lives under it, on every path: answered here, never forwarded


@dataclass
class RequestView:
    """What the stages see of an HTTP request, independent of the proxy engine."""

    method: str
    raw_path: str  # as received, percent-encoding intact, without the query
    query: str
    headers: CIMultiDict[str]
    body: bytes
    client_ip: str

    @property
    def user_agent(self) -> str:
        return self.headers.get("User-Agent", "")

    @property
    def own_path(self) -> str:
        """The path as kubegate's own API reads it: under /kubegate/, without trailing slashes (one
        rule for every call: `/kubegate/v1/freeze/` is `/kubegate/v1/freeze`); other paths as received."""
        if self.raw_path == OWN_API or self.raw_path.startswith(OWN_API + "/"):
            return self.raw_path.rstrip("/") or OWN_API
        return self.raw_path


@dataclass
class GateContext:
    request: RequestView
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    received: float = field(default_factory=time.time)
    path: str = ""  # the raw path with any /clusters/<name> prefix removed
    upstream: Upstream | None = None
    identity: Identity | None = None
    info: RequestInfo | None = None
    # The query as kube-apiserver parses it: what the gates judge, and (re-encoded) what is forwarded.
    query: Query = field(default_factory=Query)
    # For deletes and evictions: the options the apiserver will run the delete with.
    delete_options: DeleteOptions | None = None
    denial: Denial | None = None
    forwarded: bool = False
    forwarded_at: float = 0.0  # when it was handed to the cluster (the upstream latency's start)
    in_flight: bool = False  # counted in kubegate_inflight_requests until it completes
    seat: Any = None  # its overload seat (overload.Seat), released when it completes
    annotations: dict[str, str] = field(default_factory=dict)
    # Change gates that want a second person add why here; the approvals stage acts on it.
    approval_reasons: list[str] = field(default_factory=list)
    break_glass: bool = False  # one of the reasons is a freeze window
    body_view: Any = None  # the decoded body (bodies.Body), once a gate has needed it
    # What rules and webhooks judge (bodies.Body): the body, or for a patch the object it leaves.
    judged: Any = None
    patched_live: Any = None  # for a patch: the live object it was applied to (None: absent)
    lookups: dict[tuple[str, ...], Any] = field(default_factory=dict)  # gates.lookups: read once per request
    blast_radius: Any = None  # what the change takes with it (consequences.radius.BlastRadius), once assessed
    preview: str = ""  # the preview it belongs to (`kubegate preview`): mutations only dry-run, nothing is held
    forward_body: bytes | None = None  # the body to forward instead of the client's (a preview's dry-run delete)
    # Called once the stages have decided (the Denial, or None: it is forwarded), before forwarding.
    on_decided: list[Callable[["GateContext", Denial | None], Awaitable[None]]] = field(default_factory=list)
    # What gates take only once the request is sure to be forwarded (delete budgets, approval
    # tickets), run in order by the last stage; each may still refuse.
    commits: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # What to do once the cluster has answered a forwarded request, given its status code (a
    # delete the cluster refused gives its budget tokens back).
    after_response: list[Callable[[int], Awaitable[None]]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # Audit: the policy's decision for this request, the stages written, a captured response body.
    audit_decision: Any = None
    # The request read for its audit record only, when it was refused before classify read it (a
    # 401, a refused header): kube-apiserver records the verb and object of those too.
    record_info: RequestInfo | None = None
    client_id: str = ""  # the client connection's id (the engine's): connection limits, ending streams
    credential_expires: float = 0.0  # when the token it came with expires (a stream opened with it ends then)
    credential_id: str = ""  # that token's jti, and when it was issued: a revocation ends its streams too
    credential_issued: float = 0.0
    audited_stages: set[str] = field(default_factory=set)
    response_body: bytearray | None = None
    response_truncated: bool = False
    recording: Any = None  # an exec/attach session's recording (audit.recording.Recording)

    @property
    def decision(self) -> str:
        if isinstance(self.denial, Answer):
            return "local"
        if self.denial is not None:
            return "deny" if self.denial.code < 500 else "error"
        return "allow" if self.forwarded else "pending"


def context_of(metadata: MutableMapping[str, Any]) -> GateContext | None:
    """The request's context, kept in the proxy flow's metadata."""
    ctx = metadata.get(METADATA_KEY)
    return ctx if isinstance(ctx, GateContext) else None
