"""How an allowed request is rewritten for the cluster: the caller's credentials out, the
gateway's credential and Impersonate-* headers naming the caller in."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..identity.identity import Identity
from .upstreams import Upstream

# Headers a client must never get through to the apiserver: its own credential, impersonation
# requests, and the front-proxy identity headers an apiserver may trust from the gateway's cert.
STRIPPED_NAMES = frozenset({"authorization", "proxy-authorization", "x-remote-user", "x-remote-group",
                            "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"})
STRIPPED_PREFIXES = ("impersonate-", "x-remote-extra-")
SESSION_EXTRA = "kubegate.io/session"

_TOKEN_CHARS = frozenset(b"!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def escape_extra_key(key: str) -> str:
    """An Impersonate-Extra-<key> header name part, percent-encoded as client-go encodes it."""
    return "".join(chr(b) if b in _TOKEN_CHARS else f"%{b:02X}" for b in key.lower().encode())


def stripped(name: str) -> bool:
    lower = name.lower()
    return lower in STRIPPED_NAMES or lower.startswith(STRIPPED_PREFIXES)


@dataclass
class Forward:
    host: str
    port: int
    path: str  # path and query to request upstream
    add_headers: list[tuple[str, str]] = field(default_factory=list)


def plan(upstream: Upstream, identity: Identity, path: str, query: str, client_ip: str,
         request_id: str) -> Forward:
    headers: list[tuple[str, str]] = [("Impersonate-User", identity.user)]
    headers += [("Impersonate-Group", g) for g in identity.upstream_groups()]
    if identity.uid:
        headers.append(("Impersonate-Uid", identity.uid))
    extra = dict(identity.extra)
    if identity.session:  # lets the cluster's own audit log be joined with kubegate's
        extra[SESSION_EXTRA] = (identity.session,)
    for key, values in sorted(extra.items()):
        headers += [(f"Impersonate-Extra-{escape_extra_key(key)}", v) for v in values]
    if authorization := upstream.authorization():
        headers.append(("Authorization", authorization))
    headers.append(("X-Forwarded-For", client_ip))
    headers.append(("Audit-Id", request_id))  # kube-apiserver records it as the auditID
    for name, value in headers:
        # Asserted again where headers are built: a CR, LF or NUL here would be a header of its own.
        if any(c in value for c in "\r\n\0") or value != value.strip():
            raise ValueError(f"refusing to forward an unsafe {name} header value")
    full = upstream.base_path + path + (f"?{query}" if query else "")
    return Forward(upstream.host, upstream.port, full, headers)
