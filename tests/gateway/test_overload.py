"""Overload protection: seats, per-user queues served in turn, 429 with Retry-After when a user's
queue is full or a wait runs out, a separate budget for long-running requests. The unit tests drive
the admission on one event loop, step by step; the end-to-end test floods a real gateway."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Iterator

import pytest
import urllib3

from kubegate.emulator import harness
from kubegate.emulator.server import Fault
from kubegate.gateway.overload import Admission, Overloaded, Seat
from tests.conftest import GatewayHandle, start_gateway


def _admission(**kw: float) -> Admission:
    return Admission(**{"max_inflight": 1, "max_long_running": 2, "queue_length": 10, "queue_wait_seconds": 30,
                        **kw})  # type: ignore[arg-type]


def test_freed_seats_go_to_the_users_in_turn() -> None:
    async def scenario() -> list[tuple[str, int]]:
        pool = _admission()
        first = await pool.admit("flooder", False)
        order: list[tuple[str, int]] = []
        seats: asyncio.Queue[Seat] = asyncio.Queue()

        async def one(flow: str) -> None:
            seat = await pool.admit(flow, False)
            order.append((flow, seat.admitted_after))
            await seats.put(seat)
        tasks = [asyncio.create_task(one("flooder")) for _ in range(5)]
        await asyncio.sleep(0)  # the flooder's five wait
        tasks.append(asyncio.create_task(one("other")))
        await asyncio.sleep(0)  # then the other user's one
        first.release()
        for _ in range(6):  # each admitted request finishes and frees the seat for the next in turn
            (await seats.get()).release()
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(scenario())
    # The other user waited behind one of the flooder's requests, not behind all five.
    assert [flow for flow, _ in order][:3] == ["flooder", "other", "flooder"]
    assert [after for flow, after in order if flow == "other"] == [1]


def test_a_full_queue_and_a_long_wait_are_refused_with_retry_after() -> None:
    async def scenario() -> tuple[Overloaded, Overloaded]:
        pool = _admission(queue_length=1, queue_wait_seconds=0.05)
        held = await pool.admit("a", False)
        waiting = asyncio.create_task(pool.admit("a", False))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as full:
            await pool.admit("a", False)
        with pytest.raises(Overloaded) as waited:
            await waiting
        held.release()
        assert pool.inflight == 0 and pool.queued == 0
        return full.value, waited.value

    full, waited = asyncio.run(scenario())
    assert full.reason == "queue-full" and full.retry_after == 1
    assert waited.reason == "waited" and "waited 0.05s" in waited.message


def test_long_running_requests_have_their_own_budget() -> None:
    async def scenario() -> None:
        pool = _admission(queue_wait_seconds=0.05)
        ordinary = await pool.admit("a", False)
        watches = [await pool.admit("a", True) for _ in range(2)]  # the ordinary seat is taken: no matter
        with pytest.raises(Overloaded) as refused:
            await pool.admit("b", True)  # the budget is taken: it waits, and no stream closes in time
        assert refused.value.reason == "long-running" and refused.value.retry_after == 5
        assert "waited 0.05s" in refused.value.message
        for seat in (ordinary, *watches):
            seat.release()
        assert (pool.inflight, pool.long_running, pool.queued) == (0, 0, 0)
    asyncio.run(scenario())


def test_freed_long_running_seats_go_to_the_user_who_holds_fewest() -> None:
    """Fair queuing for the rest of the budget: a seat freed while several users wait goes to the one
    holding fewest streams, not to the one who asked first; equals are served in arrival order."""
    async def scenario() -> list[str]:
        pool = _admission(max_long_running=4, long_running_user_share=0.75)
        streamer = [await pool.admit("streamer", True, "watch") for _ in range(3)]
        other = await pool.admit("other", True, "watch")  # the budget is now taken
        served: list[str] = []
        seats: list[Seat] = []

        async def one(user: str) -> None:
            seats.append(await pool.admit(user, True, "watch"))
            served.append(user)
        waiting = [asyncio.create_task(one("other"))]  # holds one, asks first
        await asyncio.sleep(0)
        waiting.append(asyncio.create_task(one("newcomer")))  # holds none, asks second
        await asyncio.sleep(0)
        waiting.append(asyncio.create_task(one("late")))  # holds none, asks third
        await asyncio.sleep(0)
        assert pool.queued == 3 and served == []
        for seat in streamer:  # three streams close, one after the other
            seat.release()
            await asyncio.sleep(0)
        await asyncio.gather(*waiting)
        for seat in (*seats, other):
            seat.release()
        assert (pool.long_running, pool.queued) == (0, 0)
        return served

    assert asyncio.run(scenario()) == ["newcomer", "late", "other"]


def test_a_waiting_long_running_request_counts_towards_its_users_share() -> None:
    async def scenario() -> None:
        pool = _admission(max_long_running=2, long_running_user_share=1.0, queue_wait_seconds=5)
        held = [await pool.admit("a", True), await pool.admit("a", True)]
        with pytest.raises(Overloaded) as share:
            await pool.admit("a", True)  # 2 of 2 already: its share, whether or not a seat frees
        assert share.value.reason == "user-share"
        waiter = asyncio.create_task(pool.admit("b", True))
        await asyncio.sleep(0)
        waiter.cancel()  # the client went away while it waited
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.queued == 0
        for seat in held:
            seat.release()
        assert pool.long_running == 0 and not pool._held
    asyncio.run(scenario())


def test_one_user_cannot_hold_every_long_running_seat() -> None:
    async def scenario() -> None:
        pool = _admission(max_long_running=8, long_running_user_share=0.5, max_watches_per_user=0,
                          max_streams_per_user=2)
        viewer = [await pool.admit("viewer", True, "watch") for _ in range(4)]
        with pytest.raises(Overloaded) as share:
            await pool.admit("viewer", True, "watch")
        assert share.value.reason == "user-share" and "your share" in share.value.message
        admin = await pool.admit("admin", True, "watch")  # seats are left for everyone else
        sessions = [await pool.admit("admin", True, "session") for _ in range(2)]
        with pytest.raises(Overloaded) as cap:
            await pool.admit("admin", True, "session")
        assert cap.value.reason == "user-sessions" and "max_streams_per_user" in cap.value.message
        for seat in (*viewer, admin, *sessions):
            seat.release()
        assert pool.long_running == 0 and await pool.admit("viewer", True, "watch")
    asyncio.run(scenario())


@pytest.fixture(scope="module")
def small(upstream: harness.RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    gw = start_gateway(tmp_path_factory.mktemp("overload"), upstream,
                       overload={"max_inflight": 2, "queue_length": 3, "queue_wait_seconds": 20})
    yield gw
    gw.stop()


def test_one_users_flood_gets_429s_another_user_is_served(small: GatewayHandle, tmp_path: Path) -> None:
    emu = small.upstream
    emu.call(lambda: emu.emulator.faults.append(Fault(path=r"/namespaces/flood/", latency=0.4)))
    http = urllib3.PoolManager(ca_certs=str(small.ca_file), retries=False, maxsize=32)
    flooder, other = small.token("flo"), small.token("otto")
    answers: list[urllib3.BaseHTTPResponse] = []

    def flood() -> None:
        answers.append(http.request("GET", f"{small.url}/api/v1/namespaces/flood/configmaps",
                                    headers={"Authorization": f"Bearer {flooder}"}, timeout=60))
    threads = [threading.Thread(target=flood) for _ in range(12)]  # bounded: twelve requests
    for t in threads:
        t.start()
    served = [http.request("GET", f"{small.url}/api/v1/namespaces/default/configmaps",
                           headers={"Authorization": f"Bearer {other}", "User-Agent": f"otto/{i}"}, timeout=60).status
              for i in range(4)]
    for t in threads:
        t.join(60)
    emu.call(emu.emulator.faults.clear)
    assert served == [200, 200, 200, 200]
    codes = sorted(a.status for a in answers)
    assert set(codes) == {200, 429} and len(codes) == 12  # nothing dropped: every request answered
    for refused in (a for a in answers if a.status == 429):
        status = json.loads(refused.data)
        assert status["reason"] == "TooManyRequests" and refused.headers["Retry-After"] == "1"
        assert "serves every user in turn" in status["message"]
    queued = [e["annotations"] for e in small.audit_events()
              if e["user"]["username"] == "otto" and "kubegate.io/admitted-after" in e["annotations"]]
    assert all(int(a["kubegate.io/admitted-after"]) <= 1 for a in queued)  # never behind the whole flood
    stages = {e["annotations"].get("kubegate.io/stage") for e in small.audit_events()
              if e["user"]["username"] == "flo" and (e.get("responseStatus") or {}).get("code") == 429}
    assert stages == {"overload"}


def test_a_viewers_watches_leave_an_admin_a_watch(upstream: harness.RunningEmulator, tmp_path: Path) -> None:
    """Real watches over HTTPS: a viewer opens as many as the gateway takes from one user; the next is
    429 naming the limit, and an admin's watch is still served."""
    gw = start_gateway(tmp_path / "gw", upstream, overload={"max_long_running": 12, "long_running_user_share": 0.25,
                                                             "max_watches_per_user": 10})
    http = urllib3.PoolManager(ca_certs=str(gw.ca_file), retries=False, maxsize=16)
    opened: list[urllib3.BaseHTTPResponse] = []
    try:
        viewer, admin = gw.token("vic", ["kubegate:viewers"]), gw.token("ada")
        url = f"{gw.url}/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=60"
        for _ in range(3):  # 12 * 0.25: the viewer's share
            watch = http.request("GET", url, headers={"Authorization": f"Bearer {viewer}"}, preload_content=False,
                                 timeout=30)
            assert watch.status == 200
            opened.append(watch)
        refused = http.request("GET", url, headers={"Authorization": f"Bearer {viewer}"}, timeout=30)
        status = json.loads(refused.data)
        assert refused.status == 429 and refused.headers["Retry-After"] == "5"
        assert status["reason"] == "TooManyRequests" and "long_running_user_share" in status["message"]
        mine = http.request("GET", url, headers={"Authorization": f"Bearer {admin}"}, preload_content=False, timeout=30)
        assert mine.status == 200
        opened.append(mine)
    finally:
        for watch in opened:
            watch.release_conn()
            watch.close()
        gw.stop()
