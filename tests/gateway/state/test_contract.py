"""What every state store backend promises (memory and a real redis-server run the same tests)."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Callable

import pytest

from kubegate.gateway.state.store import BreakerSpec, Bucket, StateStore

Run = Callable[[Any], Any]
MINUTE = Bucket("pods/1m", capacity=5, rate=5 / 60, label="1m (5)")
HOUR = Bucket("pods/1h", capacity=8, rate=8 / 3600, label="1h (8)")


def test_take_counts_down_and_refuses_at_zero(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        results = [await store.take([MINUTE], 1, now=1000.0) for _ in range(6)]
        return results

    results = on_store(scenario)
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert [round(r.remaining[0], 6) for r in results[:5]] == [4, 3, 2, 1, 0]
    refused = results[5]
    assert refused.blocked == 0
    assert refused.retry_after == pytest.approx(12.0)  # one token per 12 s at 5/min


def test_every_window_must_have_room_and_all_are_charged(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        first = await store.take([MINUTE, HOUR], 5, now=0.0)  # minute window now empty
        later = await store.take([MINUTE, HOUR], 5, now=60.0)  # minute refilled, hour has ~3
        levels = await store.peek([MINUTE, HOUR], now=60.0)
        return first, later, levels

    first, later, levels = on_store(scenario)
    assert first.allowed
    assert not later.allowed and later.blocked == 1
    # nothing was taken from the minute window by the refused take
    assert levels[0] == pytest.approx(5.0)
    assert levels[1] == pytest.approx(3 + 60 * 8 / 3600)


def test_cost_larger_than_capacity_can_never_pass(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        return await store.take([MINUTE], 6, now=0.0)

    result = on_store(scenario)
    assert not result.allowed and math.isinf(result.retry_after)


def test_refill_follows_the_clock_and_caps_at_capacity(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        await store.take([MINUTE], 5, now=0.0)
        return [await store.peek([MINUTE], now=t) for t in (0.0, 12.0, 30.0, 600.0)]

    assert [round(v[0], 6) for v in on_store(scenario)] == [0, 1, 2.5, 5]


def test_a_clock_behind_the_last_take_refills_nothing(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        await store.take([MINUTE], 5, now=100.0)
        return await store.take([MINUTE], 1, now=40.0)  # another replica's clock lags

    assert not on_store(scenario).allowed


def test_breaker_opens_on_exhaustion_and_refuses_until_reset(on_store: Run) -> None:
    breaker = BreakerSpec("pods@emu", cooldown_seconds=0, label="pods in cluster emu")

    async def scenario(store: StateStore) -> Any:
        for _ in range(5):
            assert (await store.take([MINUTE], 1, 0.0, breaker)).allowed
        tripped = await store.take([MINUTE], 1, 1.0, breaker, reason="window {window} used up")
        after_refill = await store.take([MINUTE], 1, 3600.0, breaker)
        listed = await store.breakers(3600.0)
        reset = await store.reset_breaker("pods@emu")
        again = await store.take([MINUTE], 1, 3600.0, breaker)
        reset_twice = await store.reset_breaker("pods@emu")
        return tripped, after_refill, listed, reset, again, reset_twice, await store.breakers(3600.0)

    tripped, after_refill, listed, reset, again, reset_twice, empty = on_store(scenario)
    assert tripped.tripped and not tripped.allowed
    assert tripped.breaker is not None and tripped.breaker.reason == "window 1m (5) used up"
    assert not after_refill.allowed and not after_refill.tripped
    assert after_refill.breaker is not None and after_refill.breaker.opened_at == 1.0
    assert [(b.key, b.label, b.opened_at, b.reason) for b in listed] == \
        [("pods@emu", "pods in cluster emu", 1.0, "window 1m (5) used up")]
    assert reset is not None and reset.key == "pods@emu"
    assert again.allowed
    assert reset_twice is None and empty == []


def test_breaker_cools_down_by_itself(on_store: Run) -> None:
    breaker = BreakerSpec("pods@emu", cooldown_seconds=300)

    async def scenario(store: StateStore) -> Any:
        await store.take([MINUTE], 5, 0.0, breaker)
        await store.take([MINUTE], 1, 10.0, breaker, reason="used up")
        during = await store.take([MINUTE], 1, 309.0, breaker)
        listed_during = await store.breakers(309.0)
        after = await store.take([MINUTE], 1, 310.0, breaker)
        return during, listed_during, after, await store.breakers(310.0)

    during, listed_during, after, listed_after = on_store(scenario)
    assert not during.allowed and during.breaker is not None
    assert during.breaker.closes_at() == 310.0
    assert len(listed_during) == 1
    assert after.allowed and listed_after == []


def test_concurrent_takes_never_overdraw(on_store: Run) -> None:
    bucket = Bucket("race", capacity=37, rate=1 / 86400)

    async def scenario(store: StateStore) -> Any:
        results = await asyncio.gather(*(store.take([bucket], 1, 50.0) for _ in range(200)))
        return sum(r.allowed for r in results)

    assert on_store(scenario) == 37


def test_records_put_get_items_and_version(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        v0 = await store.version("grants")
        await store.put("grants", "a", '{"n": 1}')
        v1 = await store.version("grants")
        await store.put("grants", "b", '{"n": 2}')
        await store.put("other", "a", "x")
        return v0, v1, await store.version("grants"), await store.get("grants", "a"), \
            await store.get("grants", "zz"), await store.items("grants")

    v0, v1, v2, a, missing, items = on_store(scenario)
    assert v0 < v1 < v2
    assert a == '{"n": 1}' and missing is None
    assert items == {"a": '{"n": 1}', "b": '{"n": 2}'}


def test_swap_is_compare_and_set(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        created = await store.swap("tickets", "t1", None, "pending")
        created_twice = await store.swap("tickets", "t1", None, "pending")
        stale = await store.swap("tickets", "t1", "approved", "used")
        approved = await store.swap("tickets", "t1", "pending", "approved")
        # two replicas race to use one approved ticket: exactly one wins
        uses = await asyncio.gather(*(store.swap("tickets", "t1", "approved", "used") for _ in range(20)))
        return created, created_twice, stale, approved, sum(uses), await store.get("tickets", "t1")

    assert on_store(scenario) == (True, False, False, True, 1, "used")


def test_check_only_charges_nothing_but_opens_the_breaker_when_short(on_store: Run) -> None:
    breaker = BreakerSpec("pods@emu", cooldown_seconds=0)

    async def scenario(store: StateStore) -> Any:
        fits = await store.take([MINUTE], 4, 0.0, breaker, check_only=True)
        level = await store.peek([MINUTE], 0.0)
        too_many = await store.take([MINUTE], 6, 0.0, breaker, reason="a delete of 6", check_only=True)
        after = await store.take([MINUTE], 1, 0.0, breaker)
        return fits, level, too_many, after

    fits, level, too_many, after = on_store(scenario)
    assert fits.allowed and level == (5.0,)
    assert not too_many.allowed and too_many.tripped
    assert not after.allowed and after.breaker is not None and after.breaker.reason == "a delete of 6"


def test_redis_take_many_is_one_pipeline_of_atomic_takes(redis_server: Any) -> None:
    from kubegate.gateway.state.redis_store import RedisStore

    async def scenario() -> Any:
        store = RedisStore(redis_server.url, prefix="many:")
        try:
            breaker = BreakerSpec("b", 0)
            return await store.take_many([([MINUTE], breaker, 3.0), ([MINUTE, HOUR], None, 2.0),
                                          ([MINUTE], breaker, 1.0)], now=0.0)
        finally:
            await store.close()

    first, second, third = asyncio.run(scenario())
    assert first.allowed and first.remaining == (2.0,)
    assert second.allowed and second.remaining == (0.0, 6.0)
    assert not third.allowed and third.tripped


def test_a_check_that_may_not_trip_meets_an_open_breaker_but_opens_none(on_store: Run) -> None:
    breaker = BreakerSpec("pods@emu", cooldown_seconds=0)

    async def scenario(store: StateStore) -> Any:
        short = await store.take([MINUTE], 6, 0.0, breaker, check_only=True, trip=False)
        open_now = await store.breakers(0.0)
        await store.take([MINUTE], 6, 0.0, breaker, reason="real", check_only=True)  # a real check trips it
        while_open = await store.take([MINUTE], 1, 0.0, breaker, check_only=True, trip=False)
        return short, open_now, while_open

    short, open_now, while_open = on_store(scenario)
    assert not short.allowed and not short.tripped and short.breaker is None and short.blocked == 0
    assert open_now == []
    assert not while_open.allowed and while_open.breaker is not None and while_open.breaker.reason == "real"


def test_tokens_given_back_never_exceed_capacity(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        await store.take([MINUTE, HOUR], 3, 0.0)
        back = await store.take([MINUTE, HOUR], -3, 0.0)
        again = await store.take([MINUTE, HOUR], -3, 0.0)  # more back than was taken: capped
        level = await store.peek([MINUTE, HOUR], 0.0)
        return back, again, level

    back, again, level = on_store(scenario)
    assert back.allowed and back.remaining == pytest.approx((5.0, 8.0))
    assert again.allowed and level == pytest.approx((5.0, 8.0))


def test_swap_to_none_deletes_the_record(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        await store.put("things", "a", "1")
        before = await store.version("things")
        wrong = await store.swap("things", "a", "2", None)
        gone = await store.swap("things", "a", "1", None)
        return wrong, gone, await store.get("things", "a"), await store.items("things"), \
            await store.version("things") > before

    wrong, gone, value, items, bumped = on_store(scenario)
    assert (wrong, gone, value, items, bumped) == (False, True, None, {}, True)


def test_count_counts_records_without_reading_them(on_store: Run) -> None:
    async def scenario(store: StateStore) -> Any:
        empty = await store.count("things")
        for i in range(3):
            await store.put("things", str(i), "x")
        await store.swap("things", "1", "x", None)
        return empty, await store.count("things")

    assert on_store(scenario) == (0, 2)
