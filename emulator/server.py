"""The emulator's HTTP surface: kube-apiserver's paths, verbs, errors and streaming, on aiohttp."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import yaml
from aiohttp import WSMsgType, web

from kubegate.gateway.request import kubeproto
from kubegate import status as k8s_status

from . import commands, discovery, patch, selectors, spdy_exec, tables
from .identity import Credential, UserInfo, authenticate
from .resources import Registry, ResourceType, types_from_crd
from .controllers import Controllers
from .store import ApiError, Event, Obj, Store, object_selector_matches, pod_ready

log = logging.getLogger("kubegate.emulator")

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's limit for a request body
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


@dataclass
class RequestRecord:
    """One request as the emulator received it: what tests inspect to see what the upstream saw."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    time: float
    authenticated: str | None = None
    user: UserInfo | None = None
    status: int | None = None
    protobuf_unknown: list[str] = field(default_factory=list)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def impersonation(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for k, v in self.headers:
            if k.lower().startswith("impersonate-"):
                out.setdefault(k.lower(), []).append(v)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method, "path": self.path, "query": self.query,
            "headers": [[k, v] for k, v in self.headers], "time": self.time,
            "body": base64.b64encode(self.body).decode(), "authenticated": self.authenticated,
            "user": self.user.to_json() if self.user else None, "status": self.status,
        }


@dataclass
class Fault:
    """Misbehave on matching requests: wait, answer an error, or drop the connection."""

    path: str = ".*"  # regular expression matched against the path
    method: str | None = None
    latency: float = 0.0
    status: int | None = None
    drop: bool = False
    times: int | None = None  # how many matching requests it affects; None for all

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return (self.method is None or self.method == method) and re.search(self.path, path) is not None


@dataclass
class Target:
    """A resource request after path parsing (kube-apiserver's RequestInfo, roughly)."""

    rt: ResourceType
    namespace: str
    name: str
    subresource: str
    watch_path: bool


def _json(body: Any, code: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=code,
                        content_type="application/json")


def _status(err: ApiError) -> web.Response:
    return _json(k8s_status.failure(err.code, err.message, reason=err.reason,
                                    details=err.details), err.code)  # type: ignore[arg-type]


def _flag(query: Mapping[str, str], name: str) -> bool:
    """apimachinery's Convert_Slice_string_To_bool: absent is false, the first value `0` or `false`
    (any case) is false, any other value (the empty one too) is true."""
    if name not in query:
        return False
    return query[name].lower() not in ("0", "false")


def _propagation(options: Obj) -> str:
    """The propagation policy a delete runs with (DeleteOptions; orphanDependents is its old form)."""
    policy = options.get("propagationPolicy")
    if policy in ("Orphan", "Background", "Foreground"):
        return str(policy)
    return "Orphan" if options.get("orphanDependents") is True else "Background"


def _dry_run(values: list[str] | None) -> bool:
    if not values:
        return False
    if any(v != "All" for v in values):
        raise ApiError(400, f"Invalid dryRun value: {values}; only 'All' is supported", "BadRequest")
    return True


class Emulator:
    def __init__(self, *, tokens: Mapping[str, Credential], cert_impersonators: frozenset[str] = frozenset(),
                 history: int = 1000, bookmark_interval: float = 5.0,
                 clock: Callable[[], float] | None = None, controllers: bool = False) -> None:
        self.tokens = dict(tokens)
        self.cert_impersonators = cert_impersonators
        self.registry = Registry.with_builtins()
        self.store = Store(self.registry, history=history, clock=clock)
        if controllers:  # workloads own ReplicaSets and pods (controllers.py)
            self.store.controllers = Controllers(self.store)
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.deny_users: set[str] = set()
        self.bookmark_interval = bookmark_interval
        self._seed()

    def _seed(self) -> None:
        ns = self.registry.lookup("", "v1", "namespaces")
        nodes = self.registry.lookup("", "v1", "nodes")
        assert ns and nodes
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.store.create(ns, "", {"metadata": {"name": name}})
        for i in (1, 2):
            self.store.create(nodes, "", {
                "metadata": {"name": f"emu-node-{i}", "labels": {"kubernetes.io/hostname": f"emu-node-{i}",
                                                                 "topology.kubernetes.io/zone": "emu-a"}},
                "spec": {},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "nodeInfo": {"kubeletVersion": discovery.VERSION["gitVersion"]}},
            })

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    # -- entry point ---------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/_emulator/"):
            return await self._control(request)
        record = RequestRecord(request.method, request.path, request.query_string,
                               list(request.headers.items()), b"", time.time())
        self.requests.append(record)
        try:
            record.body = await request.read()
            response = await self._faulted(request)
            if response is None:
                response = await self._serve(request, record)
        except ApiError as e:
            response = _status(e)
        except web.HTTPRequestEntityTooLarge:
            response = _status(ApiError(413, "the request body is too large", "RequestEntityTooLarge"))
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as e:  # an emulator bug still answers like kube-apiserver: a 500 Status
            log.exception("emulator error on %s %s", request.method, request.path)
            response = _status(ApiError(500, f"emulator error: {type(e).__name__}: {e}", "InternalError"))
        if isinstance(response, web.StreamResponse):
            record.status = response.status
        return response

    async def _faulted(self, request: web.Request) -> web.StreamResponse | None:
        for fault in self.faults:
            if not fault.matches(request.method, request.path):
                continue
            if fault.times is not None:
                fault.times -= 1
            if fault.latency:
                await asyncio.sleep(fault.latency)
            if fault.drop:
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError
            if fault.status:
                return _status(ApiError(fault.status, f"injected fault: {fault.status}"))
        return None

    async def _serve(self, request: web.Request, record: RequestRecord) -> web.StreamResponse:
        path = request.path
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return _json(discovery.VERSION)
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        cred, user = authenticate(request.headers, peercert, self.tokens, self.cert_impersonators)
        record.authenticated, record.user = cred.user.username, user
        if path.startswith("/openapi/"):
            return self._openapi(path)
        if path in ("/api", "/apis"):
            wanted = discovery.aggregated_version(request.headers.get("Accept", ""))
            if wanted is not None:
                return web.Response(body=json.dumps(discovery.aggregated(self.registry, path == "/api", wanted),
                                                    separators=(",", ":")).encode(),
                                    headers={"Content-Type": f"application/json;g=apidiscovery.k8s.io;v={wanted};"
                                                             "as=APIGroupDiscoveryList", "Vary": "Accept"})
            if path == "/api":
                return _json(discovery.api_versions())
            return _json(discovery.api_group_list(self.registry))
        target = self._parse(path)
        if target is None:
            return self._discovery(path)
        if user.username in self.deny_users:
            raise ApiError(403, f'{target.rt.plural} is forbidden: User "{user.username}" cannot '
                                f'{request.method.lower()} resource "{target.rt.plural}"', "Forbidden")
        # Only the credential itself (not whom it impersonates) holds its impersonation right.
        own = user.username == cred.user.username
        return await self._resource(request, record, target, user, may_impersonate=own and cred.may_impersonate)

    def _openapi(self, path: str) -> web.Response:
        if path == "/openapi/v2":
            return web.Response(body=discovery.openapi_v2_protobuf(),
                                content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        if path == "/openapi/v3":
            return _json(discovery.openapi_v3_root(self.registry))
        if path.startswith("/openapi/v3/"):
            doc = discovery.openapi_v3_document(self.registry, path[len("/openapi/v3/"):])
            if doc is not None:
                return _json(doc)
        raise ApiError(404, "the server could not find the requested resource", "NotFound")

    def _discovery(self, path: str) -> web.Response:
        parts = path.strip("/").split("/")
        doc: dict[str, Any] | None = None
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.resource_list(self.registry, "", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(self.registry, parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = discovery.resource_list(self.registry, parts[1], parts[2])
        if doc is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return _json(doc)

    def _parse(self, path: str) -> Target | None:
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        watch_path = rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        namespace = ""
        # namespaces/{ns}/{resource}/... unless the third part is a namespace subresource.
        if rest[:1] == ["namespaces"] and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3 or any(p == "" for p in rest):
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        rt = self.registry.lookup(group, version, rest[0])
        if rt is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and rt.subresource(sub) is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if namespace and not rt.namespaced:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        return Target(rt, namespace, name, sub, watch_path)

    # -- resources -----------------------------------------------------------------------------

    async def _resource(self, request: web.Request, record: RequestRecord, t: Target,
                        user: UserInfo, *, may_impersonate: bool = False) -> web.StreamResponse:
        m, q = request.method, request.query
        dry_run = _dry_run(q.getall("dryRun", None))
        if t.rt.namespaced and t.name and not t.namespace:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
        if t.watch_path or (m == "GET" and not t.name and _flag(q, "watch")):
            return await self._watch(request, t)
        if t.rt.virtual:
            if m != "POST" or t.name:
                raise ApiError(405, f"{m} is not supported on {t.rt.plural}", "MethodNotAllowed")
            return _json(self._review(t.rt, self._body(request, record), user, may_impersonate=may_impersonate),
                         201)
        if t.subresource in ("exec", "attach"):
            return await self._exec(request, t)
        if t.subresource == "log":
            return await self._log(request, t)
        if t.subresource == "eviction" and m == "POST":
            # The eviction REST's propagateDryRun: the Eviction's deleteOptions.dryRun, else the query's.
            inner = (self._body(request, record) if record.body else {}).get("deleteOptions") or {}
            self._within_disruption_budgets(t.namespace, t.name)
            self.store.delete(t.rt, t.namespace, t.name, dry_run=dry_run or _dry_run(inner.get("dryRun")),
                              propagation=_propagation(inner))
            return _json(k8s_status.success(), 201)
        if t.subresource == "portforward":
            raise ApiError(400, "port-forward is not emulated", "BadRequest")
        if t.subresource == "token" and m == "POST":
            return _json(self._token_request(t, self._body(request, record) if record.body else {}), 201)
        if m == "GET":
            if not t.name:
                return self._list(request, t)
            obj = self.store.get(t.rt, t.namespace, t.name)
            if t.subresource == "scale":
                return _json(self._scale(obj))
            return _json(tables.table(t.rt, [obj], self.store.clock()) if tables.wanted(request) else obj)
        if m == "POST" and not t.name:
            return _json(self._create(t, self._body(request, record), dry_run), 201)
        if m == "PUT" and t.name:
            body = self._body(request, record)
            if t.subresource == "scale":
                return _json(self._set_scale(t, body, dry_run))
            obj, created = self.store.update(t.rt, t.namespace, t.name, body,
                                             subresource=t.subresource or None, dry_run=dry_run)
            return _json(obj, 201 if created else 200)
        if m == "PATCH" and t.name:
            return self._patch(request, record, t, dry_run)
        if m == "DELETE" and t.name:
            opts = self._delete_options(request, record)
            pre = opts.get("preconditions") or {}
            obj = self.store.delete(t.rt, t.namespace, t.name, uid=pre.get("uid"),
                                    rv=pre.get("resourceVersion"), dry_run=_dry_run(opts.get("dryRun")),
                                    propagation=_propagation(opts))
            return _json(obj)
        if m == "DELETE" and not t.name:
            labels, fields = self._selectors(q)
            opts = self._delete_options(request, record)
            gone = self.store.delete_collection(t.rt, t.namespace or None, labels, fields,
                                                dry_run=_dry_run(opts.get("dryRun")), propagation=_propagation(opts))
            return _json({"kind": f"{t.rt.kind}List", "apiVersion": t.rt.api_version,
                          "metadata": {"resourceVersion": str(self.store.rv)}, "items": gone})
        raise ApiError(405, f"the server does not allow this method on the requested resource",
                       "MethodNotAllowed")

    def _body(self, request: web.Request, record: RequestRecord) -> Obj:
        ctype = request.headers.get("Content-Type", "")
        if kubeproto.is_protobuf(ctype):
            try:
                decoded = kubeproto.decode(record.body)
            except kubeproto.ProtobufError as e:
                raise ApiError(400, f"the body of the request was in an unknown format: {e}",
                               "BadRequest") from e
            record.protobuf_unknown = decoded.unknown
            return decoded.obj
        try:
            body = yaml.safe_load(record.body) if "yaml" in ctype else json.loads(record.body or b"null")
        except (ValueError, yaml.YAMLError) as e:
            raise ApiError(400, f"the body of the request could not be decoded: {e}", "BadRequest") from e
        if not isinstance(body, (dict, list)):
            raise ApiError(400, "the body of the request must be an object", "BadRequest")
        return body  # type: ignore[return-value]

    def _within_disruption_budgets(self, ns: str, pod_name: str) -> None:
        """The eviction REST's check: a Ready pod covered by a budget that allows no disruption stays."""
        pods, pdbs = self.store.registry.lookup("", "v1", "pods"), self.store.registry.lookup("policy", "v1",
                                                                                              "poddisruptionbudgets")
        if pods is None or pdbs is None:
            return
        pod = self.store.get(pods, ns, pod_name)
        if not pod_ready(pod):
            return
        for pdb in self.store.list_objects(pdbs, ns):
            if object_selector_matches((pdb.get("spec") or {}).get("selector"), pod["metadata"].get("labels")) \
                    and pdb["status"]["disruptionsAllowed"] < 1:
                raise ApiError(429, "Cannot evict pod as it would violate the pod's disruption budget.",
                               "TooManyRequests", {"causes": [{"reason": "DisruptionBudget", "message":
                                   f"The disruption budget {pdb['metadata']['name']} needs "
                                   f"{pdb['status']['desiredHealthy']} healthy pods and has "
                                   f"{pdb['status']['currentHealthy']} currently"}]})

    def _delete_options(self, request: web.Request, record: RequestRecord) -> Obj:
        """As kube-apiserver's delete.go: from the body when there is one, the query only otherwise."""
        if not record.body:
            return {"dryRun": request.query.getall("dryRun", None),
                    "propagationPolicy": request.query.get("propagationPolicy"),
                    "orphanDependents": request.query.get("orphanDependents") == "true" or None}
        body = self._body(request, record)
        if not isinstance(body, dict) or body.get("kind") not in (None, "", "DeleteOptions"):
            raise ApiError(400, "the body of a delete must be DeleteOptions", "BadRequest")
        return body

    @staticmethod
    def _selectors(q: Mapping[str, str]) -> tuple[selectors.LabelSelector | None,
                                                  selectors.FieldSelector | None]:
        try:
            return selectors.parse_labels(q.get("labelSelector")), selectors.parse_fields(q.get("fieldSelector"))
        except selectors.SelectorError as e:
            raise ApiError(400, str(e), "BadRequest") from e

    def _list(self, request: web.Request, t: Target) -> web.Response:
        q = request.query
        labels, fields = self._selectors(q)
        matching = list(self.store.iter_matching(t.rt, t.namespace or None, labels, fields))
        if token := q.get("continue"):
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(token))["after"])
            except (ValueError, KeyError, TypeError) as e:
                raise ApiError(400, "invalid continue token", "BadRequest") from e
            matching = [(k, o) for k, o in matching if k > after]
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        limit = int(q.get("limit") or 0)
        if limit and len(matching) > limit:
            last = matching[limit - 1][0]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"after": last}).encode()).decode()
            meta["remainingItemCount"] = len(matching) - limit
            matching = matching[:limit]
        items = [self.store.get(t.rt, k[0], k[1]) for k, _ in matching]
        if tables.wanted(request):  # kubectl get: the columns it prints (READY, STATUS...)
            return _json({**tables.table(t.rt, items, self.store.clock()), "metadata": meta})
        return _json({"kind": f"{t.rt.kind}List", "apiVersion": t.rt.api_version,
                      "metadata": meta, "items": items})

    def _token_request(self, t: Target, body: Obj) -> Obj:
        """TokenRequest: a token for the ServiceAccount (`kubectl create token`), which this
        emulator then takes as that ServiceAccount (allowed to impersonate: no RBAC here)."""
        self.store.get(t.rt, t.namespace, t.name)  # 404 for a ServiceAccount that does not exist
        seconds = int(((body.get("spec") or {}).get("expirationSeconds")) or 3600)
        token = secrets.token_urlsafe(24)
        user = UserInfo(f"system:serviceaccount:{t.namespace}:{t.name}",
                        ("system:serviceaccounts", f"system:serviceaccounts:{t.namespace}", "system:authenticated"))
        self.tokens[token] = Credential(user, may_impersonate=True)
        expires = dt.datetime.fromtimestamp(self.store.clock() + seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"name": t.name, "namespace": t.namespace},
                "spec": {"audiences": (body.get("spec") or {}).get("audiences") or ["https://kubernetes.default.svc"],
                         "expirationSeconds": seconds},
                "status": {"token": token, "expirationTimestamp": expires}}

    def _create(self, t: Target, body: Obj, dry_run: bool) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be an object", "BadRequest")
        kind = body.get("kind")
        if kind and kind != t.rt.kind:
            raise ApiError(400, f"the kind {kind!r} of the body does not match {t.rt.kind!r}", "BadRequest")
        if t.rt.plural == "customresourcedefinitions":
            try:
                new_types = types_from_crd(body)
            except ValueError as e:
                raise ApiError(422, f"CustomResourceDefinition is invalid: {e}", "Invalid") from e
        obj = self.store.create(t.rt, t.namespace, body, dry_run=dry_run)
        if t.rt.plural == "customresourcedefinitions" and not dry_run:
            for rt in new_types:
                self.registry.add(rt)
            obj["status"] = {"conditions": [{"type": "Established", "status": "True"}],
                             "acceptedNames": obj["spec"]["names"]}
            self.store.update(t.rt, "", obj["metadata"]["name"], obj, subresource="status")
        return obj

    def _patch(self, request: web.Request, record: RequestRecord, t: Target, dry_run: bool) -> web.Response:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = self._body(request, record)
        try:
            current: Obj | None = self.store.get(t.rt, t.namespace, t.name)
        except ApiError as e:
            if e.code != 404 or ctype != "application/apply-patch+yaml" or t.subresource:
                raise
            current = None
        if current is None:  # server-side apply of an object that does not exist yet: create it
            assert isinstance(body, dict)
            body.setdefault("metadata", {})["name"] = t.name
            return _json(self.store.create(t.rt, t.namespace, body, dry_run=dry_run), 201)
        view = self._scale(current) if t.subresource == "scale" else current
        try:
            if ctype == "application/json-patch+json":
                patched = patch.json_patch(view, body)
            elif ctype == "application/merge-patch+json":
                patched = patch.merge_patch(view, body)
            elif ctype in ("application/strategic-merge-patch+json", "application/apply-patch+yaml"):
                if t.rt.group not in ("", "apps", "batch", "rbac.authorization.k8s.io") \
                        and ctype == "application/strategic-merge-patch+json":
                    raise ApiError(415, "strategic merge patch format is not supported",
                                   "UnsupportedMediaType")
                patched = patch.strategic_merge(view, body)
            else:
                raise ApiError(415, f"the body of the request was in an unknown format - accepted "
                                    "media types include: application/json-patch+json, "
                                    "application/merge-patch+json, application/apply-patch+yaml",
                               "UnsupportedMediaType")
        except patch.PatchError as e:
            raise ApiError(422, str(e), "Invalid") from e
        if not isinstance(patched, dict):
            raise ApiError(422, "the patch did not produce an object", "Invalid")
        if t.subresource == "scale":
            return _json(self._set_scale(t, patched, dry_run))
        obj, _ = self.store.update(t.rt, t.namespace, t.name, patched,
                                   subresource=t.subresource or None, dry_run=dry_run)
        return _json(obj)

    def _scale(self, obj: Obj) -> Obj:
        spec = obj.get("spec") or {}
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        meta = obj["metadata"]
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": spec.get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(match.items()))},
        }

    def _set_scale(self, t: Target, scale: Obj, dry_run: bool) -> Obj:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Scale is invalid: spec.replicas: must be a non-negative integer", "Invalid")
        current = self.store.get(t.rt, t.namespace, t.name)
        sent_rv = (scale.get("metadata") or {}).get("resourceVersion")
        current["spec"]["replicas"] = replicas
        current["metadata"]["resourceVersion"] = sent_rv or current["metadata"]["resourceVersion"]
        obj, _ = self.store.update(t.rt, t.namespace, t.name, current, dry_run=dry_run)
        return self._scale(obj)

    def _review(self, rt: ResourceType, body: Obj, user: UserInfo, *, may_impersonate: bool = False) -> Obj:
        out = {**body, "apiVersion": rt.api_version, "kind": rt.kind}
        out.setdefault("metadata", {})["creationTimestamp"] = None
        allowed = user.username not in self.deny_users
        asked = ((body.get("spec") or {}).get("resourceAttributes") or {}) if isinstance(body, dict) else {}
        if rt.kind == "SelfSubjectAccessReview" and asked.get("verb") == "impersonate":
            allowed = allowed and may_impersonate  # the emulator's stand-in for an RBAC impersonate grant
        if rt.kind == "SelfSubjectReview":
            out["status"] = {"userInfo": user.to_json()}
        elif rt.kind == "SelfSubjectAccessReview":
            out["status"] = {"allowed": allowed,
                             "reason": f'emulator: user "{user.username}" is '
                                       f'{"allowed everything" if allowed else "denied everything"}'}
            if not allowed:
                out["status"]["denied"] = True
        else:
            out["status"] = {
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}] if allowed else [],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}] if allowed else [],
                "incomplete": False,
            }
        return out

    # -- watch ---------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        labels, fields = self._selectors(q)
        timeout = min(float(q.get("timeoutSeconds") or 1800), 3600.0)
        bookmarks = _flag(q, "allowWatchBookmarks")
        initial_events = _flag(q, "sendInitialEvents")
        rv = q.get("resourceVersion", "")
        ns = t.namespace or None
        if t.name:  # the legacy /watch/.../{name} form watches one object
            fields = selectors.parse_fields(",".join(filter(None, [f"metadata.name={t.name}",
                                                                   q.get("fieldSelector")])))
        watcher = self.store.subscribe(t.rt)
        try:
            initial: list[Obj] = []
            backlog: list[Event] = []
            expired: ApiError | None = None
            if initial_events or rv in ("", "0"):
                initial = self.store.list_objects(t.rt, ns, labels, fields)
            else:
                try:
                    backlog = self.store.events_since(t.rt, int(rv))
                except ValueError:
                    raise ApiError(400, f"invalid resourceVersion {rv!r}", "BadRequest") from None
                except ApiError as e:
                    expired = e
            last_rv = self.store.rv
            resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Cache-Control": "no-cache"})
            await resp.prepare(request)

            async def send(kind: str, obj: Obj) -> None:
                await resp.write(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")

            if expired is not None:  # kube-apiserver reports an expired version as an ERROR event
                await send("ERROR", dict(k8s_status.failure(410, expired.message, reason="Expired")))
                return resp
            for obj in initial:
                await send("ADDED", obj)
            if initial_events and bookmarks:
                await send("BOOKMARK", self._bookmark(t.rt, last_rv, initial_end=True))
            for ev in backlog:
                if delivered := self._filter(ev, ns, labels, fields):
                    await send(*delivered)
            deadline = asyncio.get_running_loop().time() + timeout
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    ev = await asyncio.wait_for(watcher.queue.get(),
                                                min(left, self.bookmark_interval))
                except asyncio.TimeoutError:
                    if bookmarks:
                        await send("BOOKMARK", self._bookmark(t.rt, self.store.rv))
                    continue
                if ev.rv > last_rv and (delivered := self._filter(ev, ns, labels, fields)):
                    await send(*delivered)
            return resp
        finally:
            self.store.unsubscribe(watcher)

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

    def _filter(self, ev: Event, ns: str | None, labels: selectors.LabelSelector | None,
                fields: selectors.FieldSelector | None) -> tuple[str, Obj] | None:
        """The event as this watcher sees it: objects entering or leaving its selection are
        ADDED or DELETED, as kube-apiserver's watch cache reports them."""

        def selected(obj: Obj | None) -> bool:
            if obj is None or (ns and obj["metadata"].get("namespace") != ns):
                return False
            if labels and not labels.matches(obj["metadata"].get("labels")):
                return False
            return not (fields and not fields.matches(obj))

        now, before = selected(ev.obj), selected(ev.old)
        if ev.type == "MODIFIED" and now != before:
            return ("ADDED", ev.obj) if now else ("DELETED", ev.obj)
        return (ev.type, ev.obj) if now else None

    # -- logs and exec -------------------------------------------------------------------------

    def _container(self, pod: Obj, requested: str | None) -> Obj:
        containers = (pod.get("spec") or {}).get("containers") or []
        name = pod["metadata"]["name"]
        if requested:
            for c in containers:
                if c.get("name") == requested:
                    return c
            raise ApiError(400, f"container {requested} is not valid for pod {name}", "BadRequest")
        if len(containers) == 1:
            return containers[0]
        default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
        if default:
            return self._container(pod, default)
        names = " ".join(c.get("name", "") for c in containers)
        raise ApiError(400, f"a container name must be specified for pod {name}, choose one of: [{names}]",
                       "BadRequest")

    async def _log(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        pod = self.store.get(t.rt, t.namespace, t.name)
        container = self._container(pod, q.get("container"))["name"]
        if _flag(q, "previous"):
            raise ApiError(400, f'previous terminated container "{container}" in pod "{t.name}" not found',
                           "BadRequest")
        key = (t.namespace, t.name, container)
        lines = list(self.store.logs.get(key, []))
        if tail := q.get("tailLines"):
            lines = lines[-int(tail):] if int(tail) > 0 else []
        stamp = _flag(q, "timestamps")
        render: Callable[[str], bytes] = lambda line: ((line if stamp else line.split(" ", 1)[1]) + "\n").encode()  # noqa: E731
        limit = int(q.get("limitBytes") or 0)
        if not _flag(q, "follow"):
            text = b"".join(render(line) for line in lines)
            return web.Response(body=text[:limit] if limit else text, content_type="text/plain")
        follower = self.store.follow_log(*key)
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            for line in lines:
                await resp.write(render(line))
            while (line_or_end := await follower.get()) is not None:
                await resp.write(render(line_or_end))
            return resp
        finally:
            self.store.unfollow_log(*key, follower)

    async def _exec(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        pod = self.store.get(t.rt, t.namespace, t.name)
        container = self._container(pod, q.get("container"))
        argv = q.getall("command", [])
        if t.subresource == "exec" and not argv:
            raise ApiError(400, "you must specify at least 1 command", "BadRequest")
        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade.startswith("spdy/"):
            return await self._exec_spdy(request, t, container, argv)
        if upgrade != "websocket":
            raise ApiError(400, "Upgrade request required", "BadRequest")
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, autoping=True)
        if not ws.can_prepare(request).ok or ws.can_prepare(request).protocol is None:
            raise ApiError(400, f"none of the requested subprotocols is supported: {EXEC_PROTOCOLS}",
                           "BadRequest")
        await ws.prepare(request)
        v5 = ws.ws_protocol == EXEC_PROTOCOLS[0]
        tty = _flag(q, "tty")
        want = {STDOUT: _flag(q, "stdout"), STDERR: _flag(q, "stderr") and not tty}
        stdin = commands.Stdin() if _flag(q, "stdin") else None
        lock = asyncio.Lock()

        def writer(channel: int) -> Callable[[bytes], Awaitable[None]]:
            async def write(data: bytes) -> None:
                target = STDOUT if (channel == STDERR and tty) else channel
                if (want.get(target) or (tty and target == STDOUT)) and not ws.closed:
                    async with lock:
                        await ws.send_bytes(bytes([target]) + data)
            return write

        env = _container_env(t, container)
        proc = commands.Container(t.name, container["name"], env, writer(STDOUT), writer(STDERR), stdin, tty)

        async def pump() -> None:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                if channel == STDIN and stdin is not None and data:
                    stdin.queue.put_nowait(data)
                elif channel == CLOSE and v5 and data[:1] == bytes([STDIN]) and stdin is not None:
                    stdin.queue.put_nowait(None)
            if stdin is not None:
                stdin.queue.put_nowait(None)

        reader = asyncio.create_task(pump())
        try:
            result = await self._run_session(t, container["name"], argv, proc, writer(STDERR))
            if not ws.closed:
                async with lock:
                    await ws.send_bytes(bytes([ERROR]) + json.dumps(result).encode())
                await ws.close()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return ws

    async def _run_session(self, t: Target, container: str, argv: list[str], proc: commands.Container,
                           stderr: Callable[[bytes], Awaitable[None]]) -> dict[str, Any]:
        """Run an exec's command (or follow an attached container); the Status that ends the session."""
        if t.subresource == "attach":
            code = await self._attached(t, container, proc)
        else:
            try:
                code = await commands.run(argv, proc)
            except commands.NotFound:
                await stderr(f'OCI runtime exec failed: exec failed: unable to start container process: '
                             f'exec: "{argv[0]}": executable file not found in $PATH: unknown\n'.encode())
                code = 126
        if code == 0:
            return k8s_status.success()
        return {
            "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"{argv}, exit code {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }

    async def _exec_spdy(self, request: web.Request, t: Target, container: dict[str, Any],
                         argv: list[str]) -> web.StreamResponse:
        q = request.query
        tty = _flag(q, "tty")
        wanted = {"error"} | {name for name, on in (("stdin", _flag(q, "stdin")), ("stdout", _flag(q, "stdout")),
                                                     ("stderr", _flag(q, "stderr") and not tty),
                                                     ("resize", tty)) if on}
        try:
            resp, session = await spdy_exec.upgrade(request, wanted)
        except ValueError as e:
            if request.transport is None or request.transport.is_closing():
                raise asyncio.CancelledError() from None
            raise ApiError(400, str(e), "BadRequest") from None
        stdin = commands.Stdin() if "stdin" in wanted else None
        if stdin is not None:
            session.stdin = stdin.queue

        def writer(kind: str) -> Callable[[bytes], Awaitable[None]]:
            async def write(data: bytes) -> None:
                session.send("stdout" if tty else kind, data)
            return write

        env = _container_env(t, container)
        proc = commands.Container(t.name, container["name"], env, writer("stdout"), writer("stderr"), stdin, tty)
        result = await self._run_session(t, container["name"], argv, proc, writer("stderr"))
        session.finish(result)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(session.gone.wait(), 5)  # the client closes once it has read the end
        return resp

    async def _attached(self, t: Target, container: str, proc: commands.Container) -> int:
        """The emulated container's main process: new log lines go to stdout, stdin echoes back."""
        key = (t.namespace, t.name, container)
        follower = self.store.follow_log(*key)

        async def logs() -> None:
            while (line := await follower.get()) is not None:
                await proc.stdout((line.split(" ", 1)[1] + "\n").encode())

        task = asyncio.create_task(logs())
        try:
            if proc.stdin is None:
                await task
                return 0
            while (data := await proc.stdin.read()) is not None:
                await proc.stdout(data)
            return 0
        finally:
            task.cancel()
            self.store.unfollow_log(*key, follower)

    # -- control API (tests and demos) ---------------------------------------------------------

    async def _control(self, request: web.Request) -> web.StreamResponse:
        try:
            peercert = request.transport.get_extra_info("peercert") if request.transport else None
            cred, _ = authenticate(request.headers, peercert, self.tokens, self.cert_impersonators)
            if "system:masters" not in cred.user.groups:
                raise ApiError(403, "the emulator's control API needs a system:masters credential", "Forbidden")
            action = request.path[len("/_emulator/"):]
            if action == "requests" and request.method == "GET":
                return _json([r.to_json() for r in self.requests])
            if action == "requests" and request.method == "DELETE":
                self.requests.clear()
                return _json(k8s_status.success())
            if action == "faults" and request.method == "POST":
                self.faults.append(Fault(**(await request.json())))
                return _json(k8s_status.success(), 201)
            if action == "faults" and request.method == "DELETE":
                self.faults.clear()
                return _json(k8s_status.success())
            if action == "compact" and request.method == "POST":
                self.store.compact()
                return _json(k8s_status.success())
            parts = action.split("/")
            if parts[0] == "logs" and len(parts) == 4 and request.method == "POST":
                pods = self.registry.lookup("", "v1", "pods")
                assert pods is not None
                self.store.get(pods, parts[1], parts[2])  # 404 when the pod does not exist
                for line in (await request.text()).splitlines():
                    self.store.append_log(parts[1], parts[2], parts[3], line)
                return _json(k8s_status.success(), 201)
            raise ApiError(404, f"no emulator control action {action!r}", "NotFound")
        except ApiError as e:
            return _status(e)
        except (TypeError, ValueError) as e:
            return _status(ApiError(400, f"bad control request: {e}", "BadRequest"))


def _container_env(t: Target, container: dict[str, Any]) -> dict[str, str]:
    """What a process in the emulated container sees in its environment."""
    return {"HOSTNAME": t.name, "PATH": "/usr/local/bin:/usr/bin:/bin",
            **{e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "name" in e}}
