"""Classify an API request the way kube-apiserver does (its RequestInfoFactory), or refuse it.

Anything kube-apiserver might parse differently from us is refused, never guessed: dot
segments, empty segments, encoded slashes, dots or backslashes, `;`, control characters and
parts beyond what the route allows. The query is read by `query.Query` (Go's rules); `watch` is
a boolean the apimachinery way (`?watch=` and `?watch` are watches).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ..errors import Denial
from .query import Query

MUTATING = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READ_ONLY = frozenset({"get", "list", "watch"})
METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}
# Subresources whose GET opens a stream that can act (kube-apiserver authorizes these as create).
CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
# The kubelet's own APIs that act inside containers (or dump them), reachable through nodes/proxy.
KUBELET_ACTIONS = frozenset({"exec", "run", "attach", "portforward", "cri", "checkpoint", "debug"})

_ENCODED_FORBIDDEN = re.compile(r"%(2[fF]|5[cC]|2[eE]|00|25)")
_SEGMENT_OK = re.compile(r"^[A-Za-z0-9._:@~!$&'()*+,=-]+$")


# Subresources whose response streams for as long as the client keeps it (kube-apiserver's long-running
# requests, with watches): they are audited with ResponseStarted and hold an overload seat of their own.
LONG_RUNNING_SUBRESOURCES = frozenset({"attach", "exec", "proxy", "log", "portforward"})


@dataclass(frozen=True)
class RequestInfo:
    path: str
    verb: str
    is_resource: bool
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    proxy_path: str = ""  # what follows `.../proxy/` (pods, services, nodes proxy)

    @property
    def mutating(self) -> bool:
        return self.verb in MUTATING

    @property
    def long_running(self) -> bool:
        return self.is_resource and (self.verb == "watch" or self.subresource in LONG_RUNNING_SUBRESOURCES)

    @property
    def acts(self) -> "RequestInfo":
        """The request as the gates judge what it does. An eviction is the delete of its pod;
        everything else is itself."""
        if self.is_resource and self.subresource == "eviction" and self.verb == "create" and not self.api_group:
            return RequestInfo(path=self.path, verb="delete", is_resource=True, api_version=self.api_version,
                               namespace=self.namespace, resource=self.resource, name=self.name)
        return self

    @property
    def object_path(self) -> str:
        """The path of the object itself, without subresource (a Scale has not its parent's labels)."""
        if self.subresource and self.name:
            cut = self.path.rfind(f"/{self.name}/{self.subresource}")
            if cut >= 0:
                return self.path[:cut + len(self.name) + 1]
        return self.path

    @property
    def group_resource(self) -> str:
        """`resource.group`, or `resource` in the core group: how policies name a kind."""
        return f"{self.resource}.{self.api_group}" if self.api_group else self.resource

    @property
    def object_ref(self) -> str:
        """`resource[.group][/subresource]`: how policies name what a resource request acts on."""
        return f"{self.group_resource}/{self.subresource}" if self.subresource else self.group_resource

    @property
    def resource_path(self) -> str:
        """`resource` or `resource/subresource`, as RBAC and policies name it."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_DISCOVERY = re.compile(r"^/(api(/[^/]+)?|apis(/[^/]+){0,2}|openapi/.*|version)/?$")


def is_discovery(raw_path: str) -> bool:
    """Discovery and OpenAPI documents: what clients read before any resource request."""
    return _DISCOVERY.match(raw_path) is not None


def _bad(message: str) -> Denial:
    return Denial(400, f"kubegate: {message}; the request was not forwarded", "BadRequest")


def split_path(raw_path: str) -> list[str]:
    """Decoded path segments, refusing anything that could be read two ways."""
    if not raw_path.startswith("/"):
        raise _bad("the path must be absolute")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in raw_path) or "\\" in raw_path or ";" in raw_path:
        raise _bad("the path contains characters kube-apiserver does not accept in a path")
    if _ENCODED_FORBIDDEN.search(raw_path):
        raise _bad("the path contains an encoded slash, backslash, dot, NUL or percent sign")
    if raw_path == "/":
        return []
    segments = raw_path[1:].split("/")
    if segments and segments[-1] == "":
        segments = segments[:-1]  # one trailing slash, as Go's router tolerates
    decoded = []
    for seg in segments:
        if seg in ("", ".", ".."):
            raise _bad("the path contains an empty, '.' or '..' segment")
        value = unquote(seg, errors="strict")
        if not _SEGMENT_OK.match(value):
            raise _bad(f"the path segment {value!r} contains characters that are not allowed")
        decoded.append(value)
    return decoded


def classify(method: str, raw_path: str, query: Query) -> RequestInfo:
    method = method.upper()
    if method not in METHOD_VERBS:
        raise Denial(405, f"kubegate: the method {method} is not allowed", "MethodNotAllowed")
    parts = split_path(raw_path)
    path = "/" + "/".join(parts)

    api_prefix = parts[0] if parts else ""
    min_parts = 3 if api_prefix == "apis" else 2
    if api_prefix not in ("api", "apis") or len(parts) <= min_parts:
        return RequestInfo(path=path, verb=method.lower() if method != "HEAD" else "get", is_resource=False)

    if api_prefix == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        group, version, rest = "", parts[1], parts[2:]

    verb = METHOD_VERBS[method]
    watch_path = rest[0] == "watch"
    if watch_path:
        if method not in ("GET", "HEAD"):
            raise Denial(405, f"kubegate: {method} is not allowed on a /watch/ path (a watch is a GET); the "
                              "request was not forwarded", "MethodNotAllowed")
        verb, rest = "watch", rest[1:]
    elif rest[0] == "proxy":
        raise _bad("the deprecated /proxy/ API path form is not supported")

    namespace = ""
    # /namespaces/{ns}/{resource}/... is relative to the resource, unless what follows the
    # namespace name is one of the namespace's own subresources. As in kube-apiserver, a
    # request for the namespace object itself carries its own name as its namespace.
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        raise _bad("the path names no resource")

    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    proxy_path = ""
    if len(rest) > 3:
        if subresource != "proxy":
            raise _bad("the path has parts beyond resource/name/subresource")
        proxy_path = "/".join(rest[3:])
    if resource == "nodes" and subresource == "proxy" and not group:
        action = proxy_path.split("/", 1)[0].lower()
        if action in KUBELET_ACTIONS:
            raise Denial(403, f"kubegate: the kubelet's {action!r} API through nodes/proxy reaches any pod on the "
                              "node past pod-level policy, freezes and rules; use kubectl exec, attach, port-forward "
                              "or debug, which the gateway judges; the request was not forwarded", "Forbidden")

    if not watch_path:
        if verb == "get" and not name:
            verb = "watch" if query.flag("watch") else "list"
        elif verb == "delete" and not name:
            verb = "deletecollection"
        elif verb == "get" and subresource in CONNECT_SUBRESOURCES:
            verb = "create"  # a WebSocket upgrade that can act inside the pod
    if not name and subresource:
        raise _bad("a subresource needs an object name")
    if not name and verb in ("update", "patch"):
        raise _bad(f"{verb} needs an object name")
    if name and verb == "create" and not subresource:
        raise _bad("create takes no object name in the path")

    return RequestInfo(path=path, verb=verb, is_resource=True, api_group=group, api_version=version,
                       namespace=namespace, resource=resource, subresource=subresource, name=name,
                       proxy_path=proxy_path)
