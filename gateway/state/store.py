"""The state store: what several gateway replicas must agree on.

Two operations families, both atomic:

- token buckets (`take`): delete budgets and QPS limits. One call names several buckets; the
  cost is taken from every one of them or from none (a delete passes only if every window has
  room). A bucket may be guarded by a breaker: once a take on it fails for lack of tokens the
  breaker opens, and every later take is refused until an operator resets it or it cools down.
- records (`put`/`get`/`items`/`swap`): small JSON documents by kind and id (access requests,
  approval tickets), with a per-kind version so caches know when to refresh, and
  compare-and-swap so "approve only while pending" and "use a ticket once" hold across replicas.

`MemoryStore` serves one replica; `redis_store.RedisStore` serves many, each read-modify-write a
Lua script. Both pass tests/store/test_contract.py. Time is always passed in by the caller (the
gateway's clock) so refill and cool-down can be tested with a fake clock on both backends.
"""

from __future__ import annotations

import math
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, Sequence


class StoreUnavailable(Exception):
    """The store cannot be reached or did not answer in time; gates decide what that means."""


class StoreFull(StoreUnavailable):
    """A kind of record is at its bound (MAX_RECORDS): nothing more of it is kept until records are
    purged. Whatever needed the record is refused, as when the store is away."""


MAX_RECORDS = 10_000  # of each kind any signed-in user's actions create (access requests, tickets, ended sessions)


async def room_for(store: "StateStore", kind: str, what: str, limit: int | None = None) -> None:
    """Raise StoreFull when KIND holds LIMIT (default MAX_RECORDS) records already (WHAT names them)."""
    limit = MAX_RECORDS if limit is None else limit
    if await store.count(kind) >= limit:
        raise StoreFull(f"{limit} {what} are on record, the most kept; older ones are purged as they lapse")


# The time (time.monotonic) by which the request being served must be done with the store. The
# pipeline sets it once per request, so a hung store costs a request one timeout in all, not one
# per store call.
DEADLINE: ContextVar[float | None] = ContextVar("kubegate_store_deadline", default=None)


@dataclass(frozen=True)
class Bucket:
    """A token bucket: `capacity` tokens at most, refilled continuously at `rate` per second."""

    key: str
    capacity: float
    rate: float  # tokens per second; a window of N per T seconds is capacity N, rate N/T
    label: str = ""  # how a breaker's reason names this bucket ("{window}" in the reason)

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.rate <= 0:
            raise ValueError(f"bucket {self.key}: capacity and rate must be positive")


@dataclass(frozen=True)
class BreakerSpec:
    key: str
    cooldown_seconds: float  # 0: open until reset by an operator
    label: str = ""  # what an operator reads in `kubegate breaker list`


@dataclass(frozen=True)
class BreakerState:
    key: str
    label: str
    opened_at: float
    reason: str
    cooldown_seconds: float

    def closes_at(self) -> float | None:
        return self.opened_at + self.cooldown_seconds if self.cooldown_seconds > 0 else None


@dataclass(frozen=True)
class TakeResult:
    allowed: bool
    remaining: tuple[float, ...]  # per bucket, after the take (or as found, when refused)
    blocked: int = -1  # index of the first bucket without room; -1 when allowed or the breaker refused
    retry_after: float = 0.0  # seconds until the blocking bucket could cover the cost; inf if never
    breaker: BreakerState | None = None  # set when an open breaker refused, or this take opened it
    tripped: bool = False  # this take opened the breaker


class StateStore(Protocol):
    async def take(self, buckets: Sequence[Bucket], cost: float, now: float,
                   breaker: BreakerSpec | None = None, reason: str = "", check_only: bool = False,
                   trip: bool = True) -> TakeResult:
        """Take `cost` from every bucket, or from none. `reason` is recorded if the breaker opens,
        with "{window}" replaced by the label of the bucket that had no room.
        `check_only`: answer (and open the breaker) as a take would, but charge nothing.
        `trip=False`: an open breaker still refuses, but a shortfall does not open it (a preview).
        A negative cost gives tokens back (a delete that did not happen), never above capacity."""
        ...

    async def peek(self, buckets: Sequence[Bucket], now: float) -> tuple[float, ...]: ...
    async def breakers(self, now: float) -> list[BreakerState]: ...
    async def reset_breaker(self, key: str) -> BreakerState | None: ...

    async def put(self, kind: str, id: str, value: str) -> None: ...
    async def get(self, kind: str, id: str) -> str | None: ...
    async def items(self, kind: str) -> dict[str, str]: ...
    async def count(self, kind: str) -> int:
        """How many records of this kind there are (without reading them)."""
        ...

    async def swap(self, kind: str, id: str, expected: str | None, value: str | None) -> bool:
        """Store `value` (None: delete the record) only if the record is still `expected` (None:
        absent). True if done."""
        ...

    async def version(self, kind: str) -> int:
        """Changes whenever a record of this kind changes."""
        ...

    async def ping(self) -> None: ...
    async def close(self) -> None: ...


def refill(tokens: float, last: float, bucket: Bucket, now: float) -> float:
    """Tokens in a bucket at `now`. A clock that went back (another replica's) refills nothing."""
    return min(bucket.capacity, tokens + max(0.0, now - last) * bucket.rate)


def wait_for(tokens: float, cost: float, bucket: Bucket) -> float:
    if cost > bucket.capacity:
        return math.inf
    return max(0.0, (cost - tokens) / bucket.rate)


@dataclass
class _Tokens:
    tokens: float
    last: float
    bucket: Bucket

    def full_at(self) -> float:
        return self.last + (self.bucket.capacity - self.tokens) / self.bucket.rate


@dataclass
class MemoryStore:
    """One replica's state, in this process. Thread-safe; every operation is one critical section."""

    _buckets: dict[str, _Tokens] = field(default_factory=dict)
    _breakers: dict[str, BreakerState] = field(default_factory=dict)
    _records: dict[str, dict[str, str]] = field(default_factory=dict)
    _versions: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _takes: int = 0

    def _level(self, bucket: Bucket, now: float) -> float:
        found = self._buckets.get(bucket.key)
        return bucket.capacity if found is None else refill(found.tokens, found.last, bucket, now)

    def _open_breaker(self, key: str, now: float) -> BreakerState | None:
        state = self._breakers.get(key)
        if state is not None and (closes := state.closes_at()) is not None and now >= closes:
            del self._breakers[key]  # cooled down
            return None
        return state

    async def take(self, buckets: Sequence[Bucket], cost: float, now: float,
                   breaker: BreakerSpec | None = None, reason: str = "", check_only: bool = False,
                   trip: bool = True) -> TakeResult:
        with self._lock:
            levels = [self._level(b, now) for b in buckets]
            if breaker is not None and (state := self._open_breaker(breaker.key, now)) is not None:
                return TakeResult(False, tuple(levels), breaker=state)
            for i, (bucket, level) in enumerate(zip(buckets, levels)):
                if level < cost:
                    opened = None
                    if breaker is not None and trip:
                        opened = BreakerState(breaker.key, breaker.label, now,
                                              reason.replace("{window}", bucket.label), breaker.cooldown_seconds)
                        self._breakers[breaker.key] = opened
                    return TakeResult(False, tuple(levels), i, wait_for(level, cost, bucket), opened,
                                      tripped=opened is not None)
            if check_only:
                return TakeResult(True, tuple(levels))
            left = [min(bucket.capacity, level - cost) for bucket, level in zip(buckets, levels)]
            for bucket, tokens in zip(buckets, left):
                self._buckets[bucket.key] = _Tokens(tokens, now, bucket)
            self._takes += 1
            if self._takes % 10_000 == 0:
                self._forget_full(now)
            return TakeResult(True, tuple(left))

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled completely: a missing bucket reads as full."""
        for key in [k for k, t in self._buckets.items() if t.full_at() <= now]:
            del self._buckets[key]

    async def peek(self, buckets: Sequence[Bucket], now: float) -> tuple[float, ...]:
        with self._lock:
            return tuple(self._level(b, now) for b in buckets)

    async def breakers(self, now: float) -> list[BreakerState]:
        with self._lock:
            for key in list(self._breakers):
                self._open_breaker(key, now)
            return sorted(self._breakers.values(), key=lambda b: b.opened_at)

    async def reset_breaker(self, key: str) -> BreakerState | None:
        with self._lock:
            return self._breakers.pop(key, None)

    async def put(self, kind: str, id: str, value: str) -> None:
        with self._lock:
            self._records.setdefault(kind, {})[id] = value
            self._versions[kind] = self._versions.get(kind, 0) + 1

    async def get(self, kind: str, id: str) -> str | None:
        return self._records.get(kind, {}).get(id)

    async def items(self, kind: str) -> dict[str, str]:
        with self._lock:
            return dict(self._records.get(kind, {}))

    async def count(self, kind: str) -> int:
        return len(self._records.get(kind, {}))

    async def swap(self, kind: str, id: str, expected: str | None, value: str | None) -> bool:
        with self._lock:
            records = self._records.setdefault(kind, {})
            if records.get(id) != expected:
                return False
            if value is None:
                records.pop(id, None)
            else:
                records[id] = value
            self._versions[kind] = self._versions.get(kind, 0) + 1
            return True

    async def version(self, kind: str) -> int:
        return self._versions.get(kind, 0)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
