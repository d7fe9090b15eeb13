"""The state store on Redis, shared by every replica: each read-modify-write is one Lua script,
so two replicas can never both take the last token or both approve one request.

Keys all start with the configured prefix. Scripts touch several keys; on Redis Cluster they
must share a hash slot, so give the prefix a hash tag there (`{kubegate}:`).
Times are the gateways' clocks (passed in), not Redis's: replicas are assumed NTP-synced, and a
clock that lags another replica's refills nothing rather than going negative.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Sequence, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .store import DEADLINE, BreakerSpec, BreakerState, Bucket, StoreUnavailable, TakeResult, wait_for

T = TypeVar("T")

_MAX_BATCH = 256  # takes per pipeline

# After Redis failed to answer in time (hung, not refusing), it is remembered away for this long:
# calls do not each wait a timeout, reads (which pass without the store) stay fast meanwhile. A call
# made while it is away waits at most PROBE_WAIT_SECONDS for one probe (a PING, one at a time per
# process) and goes on the moment Redis answers: a Redis that is back is used at once by every
# process, instead of some refusing until their memory runs out while others already succeed.
AWAY_SECONDS = 2.0
PROBE_WAIT_SECONDS = 0.1

# Idle buckets expire this long after they would be full again (a missing bucket reads as full).
_IDLE_GRACE_SECONDS = 600

# Every take is one script call with one JSON argument and one JSON reply: packing dozens of
# separate arguments per call cost more client CPU than the script itself (bench/limits.py).
_LEVELS = """
-- Buckets that share a hash key (the windows of one budget) live as fields of one hash, read and
-- written with one call each: a Redis call from Lua costs more than the arithmetic around it.
local function levels(spec)
  local fields = {}
  for _, b in ipairs(spec.b) do
    local k = b[4]
    fields[k] = fields[k] or {}
    table.insert(fields[k], b[5] .. ':t')
    table.insert(fields[k], b[5] .. ':l')
  end
  local got = {}
  for k, names in pairs(fields) do
    local values = redis.call('HMGET', KEYS[k], unpack(names))
    local m = {}
    for j = 1, #names do m[names[j]] = values[j] end
    got[k] = m
  end
  local out = {}
  for i, b in ipairs(spec.b) do
    local m = got[b[4]]
    local tokens, last = m[b[5] .. ':t'], m[b[5] .. ':l']
    local level = b[1]
    if tokens then
      local elapsed = spec.now - tonumber(last)
      if elapsed < 0 then elapsed = 0 end
      level = math.min(b[1], tonumber(tokens) + elapsed * b[2])
    end
    out[i] = level
  end
  return out
end
"""

# KEYS: the buckets' hash keys 1..nk, breaker key, breaker index
# ARGV[1]: {"now", "cost", "nk", "b": [[capacity, rate, label, key index, field], ...],
#           "br": [cooldown, label, reason] | absent, "check": bool, "trip": bool, "grace": seconds}
# reply: {"o": "ok"|"short"|"breaker"|"tripped", "i": blocking bucket (1-based), "lv": levels,
#         "st": [opened_at, cooldown, label, reason] when a breaker refused}
_TAKE = _LEVELS + """
local spec = cjson.decode(ARGV[1])
local n = #spec.b
local lv = levels(spec)
local bkey, index = KEYS[spec.nk + 1], KEYS[spec.nk + 2]
if spec.br then
  local st = redis.call('HMGET', bkey, 'opened_at', 'cooldown', 'label', 'reason')
  if st[1] then
    local cooldown = tonumber(st[2])
    if cooldown > 0 and spec.now >= tonumber(st[1]) + cooldown then
      redis.call('DEL', bkey)
      redis.call('SREM', index, bkey)
    else
      return cjson.encode({o = 'breaker', i = 0, lv = lv, st = {tonumber(st[1]), cooldown, st[3], st[4]}})
    end
  end
end
for i = 1, n do
  if lv[i] < spec.cost then
    if spec.br and spec.trip then
      local reason = spec.br[3]
      local s, e = string.find(reason, '{window}', 1, true)
      if s then reason = string.sub(reason, 1, s - 1) .. spec.b[i][3] .. string.sub(reason, e + 1) end
      redis.call('HSET', bkey, 'opened_at', string.format('%.17g', spec.now),
                 'cooldown', string.format('%.17g', spec.br[1]), 'label', spec.br[2], 'reason', reason)
      redis.call('SADD', index, bkey)
      return cjson.encode({o = 'tripped', i = i, lv = lv, st = {spec.now, spec.br[1], spec.br[2], reason}})
    end
    return cjson.encode({o = 'short', i = i, lv = lv})
  end
end
if spec.check then return cjson.encode({o = 'ok', i = 0, lv = lv}) end
local left, writes, ttl = {}, {}, {}
local now = string.format('%.17g', spec.now)
for i, b in ipairs(spec.b) do
  left[i] = math.min(b[1], lv[i] - spec.cost)
  local k = b[4]
  writes[k] = writes[k] or {}
  table.insert(writes[k], b[5] .. ':t')
  table.insert(writes[k], string.format('%.17g', left[i]))
  table.insert(writes[k], b[5] .. ':l')
  table.insert(writes[k], now)
  ttl[k] = math.max(ttl[k] or 0, math.ceil((b[1] - left[i]) / b[2]) + spec.grace)
end
for k, args in pairs(writes) do
  redis.call('HSET', KEYS[k], unpack(args))
  redis.call('EXPIRE', KEYS[k], ttl[k])
end
return cjson.encode({o = 'ok', i = 0, lv = left})
"""

_PEEK = _LEVELS + """
return cjson.encode(levels(cjson.decode(ARGV[1])))
"""

# KEYS: breaker index. ARGV: now. Drops cooled-down breakers, returns the open ones.
_BREAKERS = """
local out = {}
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local st = redis.call('HMGET', key, 'opened_at', 'cooldown', 'label', 'reason')
  if not st[1] then
    redis.call('SREM', KEYS[1], key)
  elseif tonumber(st[2]) > 0 and tonumber(ARGV[1]) >= tonumber(st[1]) + tonumber(st[2]) then
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], key)
  else
    table.insert(out, {key, st[1], st[2], st[3], st[4]})
  end
end
return out
"""

# KEYS: breaker key, breaker index
_RESET = """
local st = redis.call('HMGET', KEYS[1], 'opened_at', 'cooldown', 'label', 'reason')
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], KEYS[1])
if not st[1] then return false end
return st
"""

# KEYS: records hash, version counter. ARGV: id, value
_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
"""

# KEYS: records hash, version counter.
# ARGV: id, expected ('' with ARGV[4]=='0' means absent), value, has_expected, delete ('1': remove it)
_SWAP = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[5] == '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('INCR', KEYS[2])
return 1
"""


def _list(value: Any) -> list[Any]:
    """cjson encodes an empty Lua table as {}: read it as the empty list it is."""
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    def __init__(self, url: str, *, prefix: str = "kubegate:", timeout_seconds: float = 0.5,
                 password: str | None = None, ca_file: str | None = None,
                 max_connections: int = 64) -> None:
        extra: dict[str, Any] = {}
        if password:
            extra["password"] = password
        if ca_file:
            extra["ssl_ca_certs"] = ca_file
        # One retry on a fresh connection covers a Redis that restarted (pooled connections are dead);
        # no backoff: a gate waiting seconds for Redis would hold the user's request that long.
        # A blocking pool: a burst of concurrent requests waits (up to the timeout) for a connection.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_seconds, socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds, health_check_interval=0, **extra)
        self._pool = pool
        self.redis = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 1))
        self.prefix = prefix
        self.url = url
        self.timeout = timeout_seconds
        self._away_until = 0.0  # until then Redis is known to be away: calls only await a probe
        self._away_since = 0.0
        self._probe: asyncio.Task[bool] | None = None  # the one PING asking whether it is back
        self._take = self.redis.register_script(_TAKE)
        self._queue: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._flushing = False
        self._peek = self.redis.register_script(_PEEK)
        self._breakers = self.redis.register_script(_BREAKERS)
        self._reset = self.redis.register_script(_RESET)
        self._put = self.redis.register_script(_PUT)
        self._swap = self.redis.register_script(_SWAP)

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def _index(self) -> str:
        return self._k("breakers")

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except ResponseError:
            raise  # a script bug is a bug: the gate fails closed with a 500, not a 503
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e

    def _where(self) -> str:
        parts = urlsplit(self.url)  # host and port only: never a password in a message
        return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path

    def _bucket_spec(self, buckets: Sequence[Bucket]) -> tuple[list[str], list[list[Any]]]:
        """(hash keys, per-bucket [capacity, rate, label, key index, field]). A bucket key
        `a/b/1m` is field `1m` of hash `a/b`, so the windows of one budget share a hash."""
        keys: list[str] = []
        spec = []
        for b in buckets:
            head, _, tail = b.key.rpartition("/")
            key = self._k("bucket", head or tail)
            if key not in keys:
                keys.append(key)
            spec.append([b.capacity, b.rate, b.label, keys.index(key) + 1, tail if head else "_"])
        return keys, spec

    def _take_call(self, buckets: Sequence[Bucket], cost: float, now: float, breaker: BreakerSpec | None,
                   reason: str, check_only: bool, trip: bool = True) -> tuple[list[str], list[Any]]:
        keys, bucket_spec = self._bucket_spec(buckets)
        spec: dict[str, Any] = {"now": now, "cost": cost, "check": check_only, "trip": trip,
                                "grace": _IDLE_GRACE_SECONDS,
                                "nk": len(keys), "b": bucket_spec}
        if breaker is not None:
            spec["br"] = [breaker.cooldown_seconds, breaker.label, reason]
        keys += [self._k("breaker", breaker.key if breaker else "-"), self._index]
        return keys, [json.dumps(spec)]

    @staticmethod
    def _take_result(out: Any, buckets: Sequence[Bucket], cost: float, breaker: BreakerSpec | None) -> TakeResult:
        reply = json.loads(out)
        outcome, levels = reply["o"], tuple(float(x) for x in _list(reply["lv"]))
        if outcome == "ok":
            return TakeResult(True, levels)
        state = None
        if outcome in ("breaker", "tripped"):
            assert breaker is not None
            opened_at, cooldown, label, why = reply["st"]
            state = BreakerState(breaker.key, label, float(opened_at), why, float(cooldown))
        if outcome == "breaker":
            return TakeResult(False, levels, breaker=state)
        blocked = int(reply["i"]) - 1
        return TakeResult(False, levels, blocked, wait_for(levels[blocked], cost, buckets[blocked]), state,
                          tripped=outcome == "tripped")

    async def _take_one(self, buckets: Sequence[Bucket], cost: float, now: float,
                   breaker: BreakerSpec | None = None, reason: str = "", check_only: bool = False,
                   trip: bool = True) -> TakeResult:
        """One take, sent in the next pipeline: takes issued while a pipeline is in flight (other
        requests' gates) travel together in the following one, one round trip for all of them."""
        keys, args = self._take_call(buckets, cost, now, breaker, reason, check_only, trip)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if not self._flushing:
            # Nothing in flight: this caller sends at once (its own take, and any queued meanwhile);
            # what arrives while it waits is sent by a task, so no caller carries others' batches.
            self._flushing = True
            try:
                await self._send_batch()
            finally:
                if self._queue:
                    asyncio.get_running_loop().create_task(self._flush())
                else:
                    self._flushing = False
        return self._take_result(await future, buckets, cost, breaker)

    async def _flush(self) -> None:
        try:
            while self._queue:
                await self._send_batch()
        finally:
            self._flushing = False

    async def _send_batch(self) -> None:
        batch, self._queue = self._queue[:_MAX_BATCH], self._queue[_MAX_BATCH:]
        try:
            if len(batch) == 1:
                outs = [await self._call(self._take, batch[0][0], batch[0][1])]
            else:
                outs = await self._pipeline([(keys, args) for keys, args, _ in batch])
        except Exception as e:  # every waiting gate learns of it (StoreUnavailable: each fails per policy)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(e)
        except BaseException:  # the sending caller was cancelled: the others must not wait forever
            for *_, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable("the Redis call carrying this take was cancelled"))
            raise
        else:
            for (*_, future), out in zip(batch, outs):
                if not future.done():
                    future.set_result(out)

    async def _pipeline(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await self._take(keys=keys, args=args, client=pipe)
                return list(await pipe.execute())
        except ResponseError:
            raise  # a script bug: the gate fails closed with a 500
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e

    async def _take_many(self, requests: Sequence[tuple[Sequence[Bucket], BreakerSpec | None, float]],
                        now: float) -> list[TakeResult]:
        """Several independent takes in one pipeline: one round trip, each take still atomic."""
        calls = [self._take_call(buckets, cost, now, breaker, "", False) for buckets, breaker, cost in requests]
        outs = await self._pipeline(calls)
        return [self._take_result(out, b, cost, br) for out, (b, br, cost) in zip(outs, requests)]

    async def _peek_levels(self, buckets: Sequence[Bucket], now: float) -> tuple[float, ...]:
        keys, bucket_spec = self._bucket_spec(buckets)
        out = await self._call(self._peek, keys, [json.dumps({"now": now, "b": bucket_spec})])
        return tuple(float(x) for x in _list(json.loads(out)))

    def _breaker_state(self, redis_key: str, fields: Sequence[Any]) -> BreakerState:
        return BreakerState(redis_key.removeprefix(self._k("breaker", "")), _text(fields[2]),
                            float(_text(fields[0])), _text(fields[3]), float(_text(fields[1])))

    async def _breakers_open(self, now: float) -> list[BreakerState]:
        out = await self._call(self._breakers, [self._index], [repr(float(now))])
        states = [self._breaker_state(_text(row[0]), row[1:]) for row in out]
        return sorted(states, key=lambda b: b.opened_at)

    async def _reset_breaker(self, key: str) -> BreakerState | None:
        redis_key = self._k("breaker", key)
        out = await self._call(self._reset, [redis_key, self._index], [])
        return None if not out else self._breaker_state(redis_key, out)

    async def _put_record(self, kind: str, id: str, value: str) -> None:
        await self._call(self._put, [self._k("records", kind), self._k("version", kind)], [id, value])

    async def _get(self, kind: str, id: str) -> str | None:
        try:
            value = await self.redis.hget(self._k("records", kind), id)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e
        return None if value is None else _text(value)

    async def _items(self, kind: str) -> dict[str, str]:
        try:
            found = await self.redis.hgetall(self._k("records", kind))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e
        return {_text(k): _text(v) for k, v in found.items()}

    async def _count(self, kind: str) -> int:
        try:
            return int(await self.redis.hlen(self._k("records", kind)))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e

    async def _swap_record(self, kind: str, id: str, expected: str | None, value: str | None) -> bool:
        args = [id, expected or "", value or "", "0" if expected is None else "1", "1" if value is None else "0"]
        return bool(await self._call(self._swap, [self._k("records", kind), self._k("version", kind)], args))

    async def _version(self, kind: str) -> int:
        try:
            value = await self.redis.get(self._k("version", kind))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e
        return 0 if value is None else int(value)

    # -- every operation: within the request's deadline, and not at all while Redis is known away --

    async def _back(self) -> bool:
        """While Redis is remembered away: is it back? One PING at a time per process, awaited for at
        most PROBE_WAIT_SECONDS by each caller (it goes on in the background, bounded by the timeout)."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._ping_quietly())
        try:
            return await asyncio.wait_for(asyncio.shield(self._probe), PROBE_WAIT_SECONDS)
        except asyncio.TimeoutError:
            return False

    async def _ping_quietly(self) -> bool:
        try:
            await self.ping()
        except StoreUnavailable:
            return False
        return True

    async def _guarded(self, what: Awaitable[T]) -> T:
        now = time.monotonic()
        if now < self._away_until and not await self._back():
            close = getattr(what, "close", None)
            if close is not None:
                close()  # never started: no "never awaited" warning
            now = time.monotonic()
            raise StoreUnavailable(f"Redis at {self._where()} did not answer {now - self._away_since:.1f}s ago, nor a "
                                   f"probe since; it is asked again in {max(0.0, self._away_until - now):.1f}s")
        now = time.monotonic()
        deadline = DEADLINE.get()
        budget = self.timeout if deadline is None else min(self.timeout, deadline - now)
        if budget <= 0:
            close = getattr(what, "close", None)
            if close is not None:
                close()
            raise StoreUnavailable("this request's time for the state store is used up")
        try:
            result = await asyncio.wait_for(what, budget)
        except (StoreUnavailable, asyncio.TimeoutError) as e:
            # Only a Redis that does not answer in time is remembered: one that refuses connections
            # fails at once anyway, and is used again the moment it is back.
            if isinstance(e, asyncio.TimeoutError) or isinstance(e.__cause__, RedisTimeoutError):
                if self._away_until <= now:
                    self._away_since = now
                self._away_until = time.monotonic() + AWAY_SECONDS
            if isinstance(e, StoreUnavailable):
                raise
            raise StoreUnavailable(f"Redis at {self._where()} did not answer within {budget:.2f}s") from None
        self._away_until = 0.0
        return result

    async def take(self, buckets: Sequence[Bucket], cost: float, now: float,
                   breaker: BreakerSpec | None = None, reason: str = "", check_only: bool = False,
                   trip: bool = True) -> TakeResult:
        return await self._guarded(self._take_one(buckets, cost, now, breaker, reason, check_only, trip))

    async def take_many(self, requests: Sequence[tuple[Sequence[Bucket], BreakerSpec | None, float]],
                        now: float) -> list[TakeResult]:
        return await self._guarded(self._take_many(requests, now))

    async def peek(self, buckets: Sequence[Bucket], now: float) -> tuple[float, ...]:
        return await self._guarded(self._peek_levels(buckets, now))

    async def breakers(self, now: float) -> list[BreakerState]:
        return await self._guarded(self._breakers_open(now))

    async def reset_breaker(self, key: str) -> BreakerState | None:
        return await self._guarded(self._reset_breaker(key))

    async def put(self, kind: str, id: str, value: str) -> None:
        await self._guarded(self._put_record(kind, id, value))

    async def get(self, kind: str, id: str) -> str | None:
        return await self._guarded(self._get(kind, id))

    async def items(self, kind: str) -> dict[str, str]:
        return await self._guarded(self._items(kind))

    async def swap(self, kind: str, id: str, expected: str | None, value: str | None) -> bool:
        return await self._guarded(self._swap_record(kind, id, expected, value))

    async def count(self, kind: str) -> int:
        return await self._guarded(self._count(kind))

    async def version(self, kind: str) -> int:
        return await self._guarded(self._version(kind))

    async def ping(self) -> None:
        """A probe: asks Redis even while it is known away, and clears that memory when it answers."""
        try:
            await asyncio.wait_for(self.redis.ping(), self.timeout)
        except (RedisError, OSError, asyncio.TimeoutError) as e:
            if self._away_until > time.monotonic():  # still away: the memory is renewed, not forgotten
                self._away_until = time.monotonic() + AWAY_SECONDS
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e or 'timeout'}") from e
        self._away_until = 0.0

    async def close(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
        await self.redis.aclose()
        await self._pool.disconnect()  # a pool handed to Redis() is not closed by it
