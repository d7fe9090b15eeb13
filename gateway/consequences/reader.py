"""Reads for a blast radius: as the requester (impersonated, so a preview never shows what they could
not read), within a budget of calls, objects and time. Past the budget a read raises `Capped`; a
read the cluster refuses raises `Unreadable`. Either way the radius says what it could not see."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..clusters.client import UpstreamClient, UpstreamError
from ..clusters.upstreams import Upstream
from ..identity.identity import Identity

PAGE = 500


@dataclass(frozen=True)
class ReadLimits:
    max_reads: int = 100  # calls to the cluster per assessed request
    max_objects: int = 20_000  # objects listed per assessed request
    seconds: float = 3.0  # wall time per assessed request


class Capped(Exception):
    """The read budget ran out: what was counted so far is a lower bound."""


class Unreadable(Exception):
    """The cluster refused or failed a read (forbidden to the requester, unreachable)."""


@dataclass(frozen=True)
class ApiResource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    def path(self, namespace: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if namespace and self.namespaced else f"{base}/{self.plural}"


class Reader(Protocol):
    reads: int
    objects: int

    async def get(self, path: str) -> dict[str, Any] | None: ...
    async def items(self, path: str, **params: str) -> list[dict[str, Any]]: ...
    async def resources(self) -> list[ApiResource]: ...
    async def dry_run(self, method: str, path: str, query: str, body: bytes, content_type: str) -> Any: ...


class ClusterReader:
    def __init__(self, client: UpstreamClient, upstream: Upstream, identity: Identity, request_id: str,
                 limits: ReadLimits = ReadLimits(), clock: Any = time.monotonic,
                 known: dict[str, dict[str, Any] | None] | None = None) -> None:
        self.client, self.upstream, self.identity, self.request_id = client, upstream, identity, request_id
        self.known = dict(known or {})  # objects already read for this request, by path (None: absent)
        self.limits, self.clock = limits, clock
        self.deadline = clock() + limits.seconds
        self.reads = 0
        self.objects = 0
        self._lists: dict[tuple[str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = {}

    def _spend(self, what: str) -> None:
        if self.reads >= self.limits.max_reads:
            raise Capped(f"read budget of {self.limits.max_reads} calls spent before {what}")
        if self.clock() > self.deadline:
            raise Capped(f"time budget of {self.limits.seconds:g}s spent before {what}")
        self.reads += 1

    async def get(self, path: str) -> dict[str, Any] | None:
        if path in self.known:
            return self.known[path]
        self._spend(f"reading {path}")
        try:
            found = await self.client.get_object(self.upstream, self.identity, path, self.request_id)
        except UpstreamError as e:
            if e.status == 404:
                return None
            raise Unreadable(f"{path}: {e.message}") from None
        self.known[path] = found if isinstance(found, dict) else None
        return self.known[path]

    async def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        """Every object of a list (page by page); a resource the cluster does not serve lists nothing."""
        key = (path, tuple(sorted(params.items())))
        if key in self._lists:
            return self._lists[key]
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            self._spend(f"listing {path}")
            query = list(params.items()) + [("limit", str(PAGE))] + ([("continue", token)] if token else [])
            try:
                body = await self.client.list_page(self.upstream, self.identity, path, query, self.request_id)
            except UpstreamError as e:
                if e.status == 404:
                    break
                raise Unreadable(f"{path}: {e.message}") from None
            page = body.get("items") if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise Unreadable(f"{path}: the cluster answered a list without items")
            items += [o for o in page if isinstance(o, dict)]
            self.objects += len(page)
            if self.objects > self.limits.max_objects:
                self._lists[key] = items
                raise Capped(f"object budget of {self.limits.max_objects} spent listing {path}")
            token = str((body.get("metadata") or {}).get("continue") or "")
            if not token:
                break
        self._lists[key] = items
        return items

    async def resources(self) -> list[ApiResource]:
        """Every listable resource the cluster serves (preferred version of each group), from discovery."""
        out: list[ApiResource] = []
        versions = [("", "v1")]
        groups = await self.get("/apis")
        for g in (groups or {}).get("groups") or []:
            preferred = (g.get("preferredVersion") or {}).get("version")
            if g.get("name") and preferred:
                versions.append((g["name"], preferred))
        for group, version in versions:
            listing = await self.get(f"/apis/{group}/{version}" if group else f"/api/{version}")
            for r in (listing or {}).get("resources") or []:
                name = str(r.get("name", ""))
                if "/" in name or "list" not in (r.get("verbs") or []):
                    continue
                out.append(ApiResource(group, version, name, str(r.get("kind", "")), bool(r.get("namespaced"))))
        return out

    async def dry_run(self, method: str, path: str, query: str, body: bytes, content_type: str) -> Any:
        self._spend(f"a dry run of {method} {path}")
        try:
            return await self.client.dry_run(self.upstream, self.identity, method, path, query, body, content_type,
                                             self.request_id)
        except UpstreamError as e:
            raise Unreadable(f"the dry run: {e.message}") from None
