from __future__ import annotations

import asyncio
import uuid
from typing import Any, Awaitable, Callable

import pytest

from kubegate.gateway.state.store import MemoryStore, StateStore
from kubegate.gateway.state.redis_store import RedisStore

Scenario = Callable[[StateStore], Awaitable[Any]]


@pytest.fixture(params=["memory", "redis"])
def on_store(request: pytest.FixtureRequest) -> Callable[[Scenario], Any]:
    """Runs a scenario against a fresh store of each backend (Redis: a real redis-server)."""
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else ""

    def run(scenario: Scenario) -> Any:
        async def main() -> Any:
            store: StateStore = RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}:") if url else MemoryStore()
            try:
                return await scenario(store)
            finally:
                await store.close()
        return asyncio.run(main())

    return run
