"""The Redis backend when Redis goes away and comes back: a clear StoreUnavailable, then recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from kubegate.gateway.state.store import DEADLINE, Bucket, StoreUnavailable
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
            result = await store.take([bucket], 1, 0.0)  # a refusing Redis is not remembered away
            assert result.allowed and result.remaining == (9.0,)
        finally:
            await store.close()
            server.stop()

    asyncio.run(scenario())


def test_a_hung_redis_costs_one_timeout_then_is_not_asked(tmp_path: Path) -> None:
    """Redis stopped (SIGSTOP: connections open, no answers). The first call waits out its timeout;
    the calls after it fail at once with a message saying Redis is remembered away, so requests that
    pass without the store (reads) are not held by it."""
    server = RedisServer(tmp_path / "redis").start()
    assert server.proc is not None

    async def scenario() -> None:
        store = RedisStore(server.url, timeout_seconds=0.3)
        try:
            await store.ping()
            os.kill(server.proc.pid, signal.SIGSTOP)  # started by the test, stopped by its PID
            with pytest.raises(StoreUnavailable, match="did not answer"):
                await store.version("x")
            for call in (store.version("x"), store.items("x"), store.take([Bucket("b", 5, 1)], 1, 0.0)):
                with pytest.raises(StoreUnavailable, match="it is asked again in"):
                    await call
            os.kill(server.proc.pid, signal.SIGCONT)
            await store.ping()  # a probe asks even now, and clears the memory when Redis answers
            assert await store.version("x") == 0
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
            await store.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_a_request_has_one_deadline_for_all_its_store_calls(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()

    async def scenario() -> None:
        store = RedisStore(server.url, timeout_seconds=0.5)
        try:
            token = DEADLINE.set(time.monotonic() - 0.01)  # this request has used its time up
            with pytest.raises(StoreUnavailable, match="time for the state store is used up"):
                await store.version("x")
            DEADLINE.reset(token)
            assert await store.version("x") == 0  # another request, with time left, is served
        finally:
            await store.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
