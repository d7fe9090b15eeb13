"""The Redis backend when Redis goes away and comes back: a clear StoreUnavailable, then recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubegate.gateway.state.store import Bucket, StoreUnavailable
from kubegate.gateway.state.redis_store import RedisStore
from tests.redis_server import RedisServer


def test_dead_redis_is_store_unavailable_and_recovers_without_a_new_client(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    bucket = Bucket("b", capacity=10, rate=1)

    async def scenario() -> None:
        store = RedisStore(server.url, timeout_seconds=0.5)
        try:
            assert (await store.take([bucket], 1, 0.0)).allowed
            server.stop()
            for call in (store.take([bucket], 1, 0.0), store.version("x"), store.items("x"), store.ping()):
                with pytest.raises(StoreUnavailable, match=f"Redis at 127.0.0.1:{server.port}"):
                    await call
            server.start()  # same port, empty data, scripts gone: the client reloads them by itself
            result = await store.take([bucket], 1, 0.0)
            assert result.allowed and result.remaining == (9.0,)
        finally:
            await store.close()
            server.stop()

    asyncio.run(scenario())
