"""Overload protection in the manner of kube-apiserver's API Priority and Fairness, per process.

Requests hold a seat while the gateway works on them: `max_inflight` seats for ordinary requests,
`max_long_running` for watches and exec/attach/port-forward/log/proxy streams (which hold one for
as long as they stream, so they get a budget of their own and cannot starve short requests). When
every seat is taken a request waits in its user's own queue (at most `queue_length` waiting per
user), and freed seats go to the users' queues in turn (round-robin), so one user's flood waits
behind itself, never in front of anyone else. A request that finds its user's queue full, or
waits longer than `queue_wait_seconds`, is refused with 429 and Retry-After — shed before the event
loop saturates, never dropped without an answer.

Long-running requests hold a seat for as long as they stream, so the budget is shared out as
APF shares seats among flows. Each user holds at most `long_running_user_share` of it, at most
`max_watches_per_user` watches and `max_streams_per_user` exec/attach/port-forward sessions; past
any of these, 429 naming the limit at once (a viewer's thousand watches cannot leave an admin's
watch a 429). When the whole budget is taken, a request waits (at most `queue_wait_seconds`, and at
most `queue_length` per user) and each freed seat goes to the waiting user who holds the fewest
seats (max-min fairness; the longest waiting among equals): a user with nothing open is served
before a user who already streams, whoever asked first. A stream is never preempted; a waiter
whose wait runs out gets 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable


class Overloaded(Exception):
    def __init__(self, message: str, retry_after: int, reason: str) -> None:
        super().__init__(message)
        self.message, self.retry_after, self.reason = message, retry_after, reason  # reason: a metric label


Kind = str  # of a long-running request: "watch", "session" (exec, attach, port-forward), "stream" (logs, proxy)


@dataclass
class Seat:
    """What an admitted request holds until it completes."""

    pool: "Admission"
    long_running: bool
    user: str = ""
    kind: Kind = ""
    waited: float = 0.0  # seconds in its queue
    admitted_after: int = 0  # other users' requests admitted while it waited (fairness, observable)
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.pool._release(self)


@dataclass
class _Waiter:
    future: "asyncio.Future[None]"
    flow: str
    since: float
    admitted_before: int


class Admission:
    def __init__(self, *, max_inflight: int, max_long_running: int, queue_length: int, queue_wait_seconds: float,
                 long_running_user_share: float = 1.0, max_watches_per_user: int = 0, max_streams_per_user: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_inflight, self.max_long_running = max_inflight, max_long_running
        # A user's most long-running seats (at least one), and per kind (0: no cap of its own).
        self.user_long_running = max(1, int(max_long_running * long_running_user_share))
        self.per_user_kind = {"watch": max_watches_per_user, "session": max_streams_per_user}
        self._held: dict[str, dict[Kind, int]] = {}  # user -> kind -> long-running seats held or waited for
        self._lr_waiters: list[_Waiter] = []  # long-running requests waiting for a seat (few: bounded per user)
        self._lr_waiting: dict[str, int] = {}  # user -> its requests in _lr_waiters
        self.queue_length, self.queue_wait = queue_length, queue_wait_seconds
        self.clock = clock
        self.inflight = 0
        self.long_running = 0
        self.admitted = 0  # requests admitted from queues, ever (the fairness counter)
        self._queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()  # flows with waiters, in turn order

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values()) + len(self._lr_waiters)

    async def admit(self, flow: str, long_running: bool, kind: Kind = "stream") -> Seat:
        if long_running:
            return await self._admit_long_running(flow, kind)
        if self.inflight < self.max_inflight and not self._queues:
            self.inflight += 1
            return Seat(self, False)
        queue = self._queues.get(flow)
        if queue is not None and len(queue) >= self.queue_length:
            raise Overloaded(f"kubegate: too many of your requests are waiting ({self.queue_length}); the gateway "
                             "is at capacity and serves every user in turn; try again shortly", 1, "queue-full")
        waiter = _Waiter(asyncio.get_running_loop().create_future(), flow, self.clock(), self.admitted)
        self._queues.setdefault(flow, deque()).append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.queue_wait)
        except asyncio.TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.inflight -= 1  # admitted just as the wait ran out: give the seat back
                self._dispatch()
            self._forget(waiter)
            raise Overloaded(f"kubegate: the gateway is at capacity; your request waited {self.queue_wait:g}s in "
                             "its queue; try again shortly", 1, "waited") from None
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.inflight -= 1
                self._dispatch()
            self._forget(waiter)
            raise
        return Seat(self, False, waited=self.clock() - waiter.since,
                    admitted_after=self.admitted - waiter.admitted_before - 1)

    async def _admit_long_running(self, user: str, kind: Kind) -> Seat:
        held = self._held.get(user, {})  # seats held and waited for, per kind
        mine, of_kind, cap = sum(held.values()), held.get(kind, 0), self.per_user_kind.get(kind, 0)
        if cap and of_kind >= cap:
            what = "watches" if kind == "watch" else "exec, attach and port-forward sessions"
            raise Overloaded(f"kubegate: you have {of_kind} {what} open, the most one user may "
                             f"(overload.max_{'watches' if kind == 'watch' else 'streams'}_per_user); close one "
                             "first", 5, f"user-{kind}s")
        if mine >= self.user_long_running:
            raise Overloaded(f"kubegate: you hold {mine} long-running requests (watches, exec, logs), your share "
                             f"of the gateway's {self.max_long_running} (overload.long_running_user_share); "
                             "close some first", 5, "user-share")
        self._held.setdefault(user, {})[kind] = of_kind + 1  # counted from now on: its share includes waiters
        if self.long_running < self.max_long_running and not self._lr_waiters:
            self.long_running += 1
            return Seat(self, True, user=user, kind=kind)
        if self._lr_waiting.get(user, 0) >= self.queue_length:
            self._unhold(user, kind)
            raise Overloaded(f"kubegate: too many of your long-running requests are waiting ({self.queue_length}); "
                             "try again shortly", 5, "queue-full")
        waiter = _Waiter(asyncio.get_running_loop().create_future(), user, self.clock(), self.admitted)
        self._lr_waiters.append(waiter)
        self._lr_waiting[user] = self._lr_waiting.get(user, 0) + 1
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.queue_wait)
        except (asyncio.TimeoutError, asyncio.CancelledError) as e:
            if waiter.future.done() and not waiter.future.cancelled():
                self.long_running -= 1  # admitted just as the wait ran out: give the seat back
            else:
                self._lr_waiters.remove(waiter)
                self._unwait(user)
            self._unhold(user, kind)
            self._dispatch_long_running()
            if isinstance(e, asyncio.CancelledError):
                raise
            raise Overloaded(f"kubegate: {self.long_running} long-running requests (watches, exec, logs) are open, "
                             f"its limit; yours waited {self.queue_wait:g}s for one to close; try again shortly", 5,
                             "long-running") from None
        return Seat(self, True, user=user, kind=kind, waited=self.clock() - waiter.since,
                    admitted_after=self.admitted - waiter.admitted_before - 1)

    def _dispatch_long_running(self) -> None:
        """Give free long-running seats to the waiting user who holds the fewest (the earliest among equals)."""
        while self.long_running < self.max_long_running and self._lr_waiters:
            def holds(w: _Waiter) -> int:
                return sum(self._held.get(w.flow, {}).values()) - self._lr_waiting.get(w.flow, 0)
            waiter = min(self._lr_waiters, key=lambda w: (holds(w), w.since))
            self._lr_waiters.remove(waiter)
            self._unwait(waiter.flow)
            if waiter.future.done():
                continue
            self.long_running += 1
            self.admitted += 1
            waiter.future.set_result(None)

    def _unwait(self, user: str) -> None:
        left = self._lr_waiting.get(user, 1) - 1
        if left:
            self._lr_waiting[user] = left
        else:
            self._lr_waiting.pop(user, None)

    def _unhold(self, user: str, kind: Kind) -> None:
        held = self._held.get(user, {})
        held[kind] = held.get(kind, 1) - 1
        if not held[kind]:
            del held[kind]
        if not held:
            self._held.pop(user, None)

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.flow)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.flow]

    def _release(self, seat: Seat) -> None:
        if seat.long_running:
            self.long_running -= 1
            self._unhold(seat.user, seat.kind)
            self._dispatch_long_running()
            return
        self.inflight -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Give free seats to the queues in turn: the first user's oldest request, then the next user's."""
        while self.inflight < self.max_inflight and self._queues:
            flow, queue = next(iter(self._queues.items()))
            waiter = queue.popleft()
            if queue:
                self._queues.move_to_end(flow)  # its next request waits for everyone else's turn
            else:
                del self._queues[flow]
            if waiter.future.done():
                continue
            self.inflight += 1
            self.admitted += 1
            waiter.future.set_result(None)
