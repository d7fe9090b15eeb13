"""Overload protection in the manner of kube-apiserver's API Priority and Fairness, per process.

Requests hold a seat while the gateway works on them: `max_inflight` seats for ordinary requests,
`max_long_running` for watches and exec/attach/port-forward/log/proxy streams (which hold one for
as long as they stream, so they get a budget of their own and cannot starve short requests). When
every seat is taken a request waits in its user's own queue (at most `queue_length` waiting per
user), and freed seats go to the users' queues in turn (round-robin), so one user's flood waits
behind itself, never in front of anyone else. A request that finds its user's queue full, or
waits longer than `queue_wait_seconds`, is refused with 429 and Retry-After — shed before the event
loop saturates, never dropped without an answer. A full long-running budget refuses at once.
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


@dataclass
class Seat:
    """What an admitted request holds until it completes."""

    pool: "Admission"
    long_running: bool
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
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_inflight, self.max_long_running = max_inflight, max_long_running
        self.queue_length, self.queue_wait = queue_length, queue_wait_seconds
        self.clock = clock
        self.inflight = 0
        self.long_running = 0
        self.admitted = 0  # requests admitted from queues, ever (the fairness counter)
        self._queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()  # flows with waiters, in turn order

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def admit(self, flow: str, long_running: bool) -> Seat:
        if long_running:
            if self.long_running >= self.max_long_running:
                raise Overloaded(f"kubegate: {self.long_running} long-running requests (watches, exec, logs) are "
                                 "open, its limit; try again shortly", 5, "long-running")
            self.long_running += 1
            return Seat(self, True)
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
        return Seat(self, False, self.clock() - waiter.since, self.admitted - waiter.admitted_before - 1)

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.flow)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.flow]

    def _release(self, seat: Seat) -> None:
        if seat.long_running:
            self.long_running -= 1
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
