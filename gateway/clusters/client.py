"""The gateway's own calls to a cluster, made as the requesting user (impersonated).

Gates sometimes need to know what a request would touch before letting it through: how many
objects a `deletecollection` (or a `kubectl delete --all`) would delete. They ask the cluster the
same question with the same selectors, under the caller's identity, so they never learn more
than the caller could.
"""

from __future__ import annotations

import ssl
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDict

from .forwarding import plan
from ..identity.identity import Identity
from ..request.query import Query
from .upstreams import Upstream

PAGE = 500
MAX_PAGES = 200  # 100,000 objects: past that, the answer is "too many" anyway
SELECTORS = ("labelSelector", "fieldSelector")


class UpstreamError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class UpstreamClient:
    def __init__(self, timeout_seconds: float = 10.0) -> None:
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._session: aiohttp.ClientSession | None = None
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    def _ssl(self, upstream: Upstream) -> ssl.SSLContext:
        ctx = self._contexts.get(upstream.name)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=str(upstream.ca_file))
            if upstream.client_cert_file and upstream.client_key_file:
                ctx.load_cert_chain(str(upstream.client_cert_file), str(upstream.client_key_file))
            self._contexts[upstream.name] = ctx
        return ctx

    async def _get(self, upstream: Upstream, identity: Identity, path: str, query: str,
                   request_id: str, post: Any = None, *, method: str = "", data: bytes | None = None,
                   content_type: str = "") -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        forward = plan(upstream, identity, path, query, "127.0.0.1", request_id)
        headers = CIMultiDict(forward.add_headers)  # repeated names (Impersonate-Group) kept
        headers["Accept"] = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        url = f"https://{upstream.host}:{upstream.port}{forward.path}"
        method = method or ("GET" if post is None else "POST")
        try:
            async with self._session.request(method, url, headers=headers, ssl=self._ssl(upstream), json=post,
                                             data=data, server_hostname=upstream.server_name) as response:
                body = await response.json(content_type=None)
                if response.status not in (200, 201):
                    message = body.get("message") if isinstance(body, dict) else None
                    raise UpstreamError(response.status, str(message or f"HTTP {response.status}"))
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise UpstreamError(503, f"cluster {upstream.name!r} did not answer: {e or type(e).__name__}") from e

    async def pages(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> AsyncIterator[list[Any]]:
        """The objects a list of `path` with the selectors in `query` returns, a page at a time."""
        selectors = [(k, query.get(k)) for k in SELECTORS if k in query]
        token = ""
        for _ in range(MAX_PAGES):
            params = selectors + [("limit", str(PAGE))] + ([("continue", token)] if token else [])
            body = await self._get(upstream, identity, path, urlencode(params), request_id)
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise UpstreamError(502, f"cluster {upstream.name!r} answered a list without items")
            yield items
            token = str((body.get("metadata") or {}).get("continue") or "")
            if not token:
                return

    async def count(self, upstream: Upstream, identity: Identity, path: str, query: Query,
                    request_id: str) -> int:
        """How many objects a list of `path` with the selectors in `query` returns, page by page."""
        return sum([len(page) async for page in self.pages(upstream, identity, path, query, request_id)])

    async def get_object(self, upstream: Upstream, identity: Identity, path: str, request_id: str) -> Any:
        """The object at `path` as the caller sees it now (rules about the current object)."""
        return await self._get(upstream, identity, path, "", request_id)

    async def create(self, upstream: Upstream, identity: Identity, path: str, body: dict[str, Any],
                     request_id: str) -> Any:
        """POST `body` to `path` as the caller (a review the cluster answers about them)."""
        return await self._get(upstream, identity, path, "", request_id, post=body)

    async def list_page(self, upstream: Upstream, identity: Identity, path: str, params: list[tuple[str, str]],
                        request_id: str) -> Any:
        """One page of a list of `path` (the caller picks selectors, limit and continue)."""
        return await self._get(upstream, identity, path, urlencode(params), request_id)

    async def dry_run(self, upstream: Upstream, identity: Identity, method: str, path: str, query: str,
                      body: bytes, content_type: str, request_id: str) -> Any:
        """The request as the caller sent it, with `dryRun=All` added to QUERY by the caller: the
        object the cluster would store (validation, defaulting, admission) and nothing stored."""
        return await self._get(upstream, identity, path, query, request_id, method=method, data=body,
                               content_type=content_type)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
