"""How an allowed request is rewritten for the cluster: the caller's credentials out, the
gateway's credential and Impersonate-* headers naming the caller in."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..identity.identity import Identity
from .upstreams import Upstream

# Headers a client must never get through to the apiserver: its own credential, impersonation
# requests, the front-proxy identity headers an apiserver may trust from the gateway's cert
# (every X-Remote-*), an Audit-Id of its own (the apiserver records the first one it sees), and
# hop-by-hop headers, which belong to the client's connection only.
STRIPPED_NAMES = frozenset({"authorization", "proxy-authorization", "x-forwarded-for", "x-forwarded-host",
                            "x-forwarded-proto", "x-real-ip", "audit-id", "keep-alive", "proxy-connection", "te",
                            "trailer", "proxy-authenticate"})
STRIPPED_PREFIXES = ("impersonate-", "x-remote-")
# A WebSocket client may carry its token as a subprotocol (`base64url.bearer.authorization.k8s.io.<token>`):
# that entry is a credential and stays at the gateway.
BEARER_SUBPROTOCOL = "base64url.bearer.authorization.k8s.io."
# Headers a hop-by-hop `Connection` list may never take off the request (an upgrade needs them).
_CONNECTION_KEEPS = frozenset({"upgrade"})
SESSION_EXTRA = "kubegate.io/session"

_TOKEN_CHARS = frozenset(b"!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def escape_extra_key(key: str) -> str:
    """An Impersonate-Extra-<key> header name part, percent-encoded as client-go encodes it."""
    return "".join(chr(b) if b in _TOKEN_CHARS else f"%{b:02X}" for b in key.lower().encode())


def stripped(name: str) -> bool:
    lower = name.lower()
    return lower in STRIPPED_NAMES or lower.startswith(STRIPPED_PREFIXES)


def header_edits(headers: list[tuple[str, str]]) -> tuple[set[str], dict[str, str]]:
    """(lower-case names to remove, names to set to a new value) for a client's headers before they
    travel upstream: the stripped names, every header the client's `Connection` names (hop-by-hop
    by its say-so), and the bearer entry of `Sec-WebSocket-Protocol`."""
    remove = {name.lower() for name, _ in headers if stripped(name)}
    set_to: dict[str, str] = {}
    tokens = [t.strip().lower() for name, value in headers if name.lower() == "connection"
              for t in value.split(",") if t.strip()]
    if tokens:
        remove |= set(tokens) - _CONNECTION_KEEPS
        # The list itself is rewritten too: an intermediary before the apiserver would otherwise drop
        # what it names (the gateway's own Authorization or Impersonate-* headers).
        kept = [t for t in tokens if t in _CONNECTION_KEEPS | {"close", "keep-alive"}]
        set_to["Connection"] = ", ".join(dict.fromkeys(kept)) if kept else "keep-alive"
    protocols = [v for n, v in headers if n.lower() == "sec-websocket-protocol"]
    if protocols:
        entries = [p.strip() for value in protocols for p in value.split(",") if p.strip()]
        kept = [p for p in entries if not p.startswith(BEARER_SUBPROTOCOL)]
        if kept != entries:
            if kept:
                set_to["Sec-WebSocket-Protocol"] = ", ".join(kept)
            else:
                remove.add("sec-websocket-protocol")
    remove.discard("connection")  # rewritten above, never dropped: an upgrade needs it
    remove -= {"host", "content-length", "transfer-encoding", "content-type"}  # framing is not the client's to drop
    return remove, set_to


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
