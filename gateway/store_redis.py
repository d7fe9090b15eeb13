"""The state store on Redis, shared by every replica: each read-modify-write is one Lua script,
so two replicas can never both take the last token or both approve one request.

Keys all start with the configured prefix. Scripts touch several keys; on Redis Cluster they
must share a hash slot, so give the prefix a hash tag there (`{kubegate}:`).
Times are the gateways' clocks (passed in), not Redis's: replicas are assumed NTP-synced, and a
clock that lags another replica's refills nothing rather than going negative.
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from .store import BreakerSpec, BreakerState, Bucket, StoreUnavailable, TakeResult, wait_for

# Idle buckets expire this long after they would be full again (a missing bucket reads as full).
_IDLE_GRACE_SECONDS = 600

_LEVELS = """
local function levels(n, now, argbase)
  local out = {}
  for i = 1, n do
    local cap = tonumber(ARGV[argbase + 2 * i - 1])
    local rate = tonumber(ARGV[argbase + 2 * i])
    local t = redis.call('HMGET', KEYS[i], 'tokens', 'last')
    local level = cap
    if t[1] then
      local elapsed = now - tonumber(t[2])
      if elapsed < 0 then elapsed = 0 end
      level = math.min(cap, tonumber(t[1]) + elapsed * rate)
    end
    out[i] = level
  end
  return out
end
local function strings(xs)
  local out = {}
  for i = 1, #xs do out[i] = string.format('%.17g', xs[i]) end
  return out
end
"""

# KEYS: bucket 1..n, [breaker key, breaker index]
# ARGV: now, cost, n, (capacity, rate) * n, has_breaker, cooldown, label, reason, grace, check_only, bucket labels * n
_TAKE = _LEVELS + """
local now, cost, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lv = levels(n, now, 3)
local b = 4 + 2 * n
local has_breaker = ARGV[b] == '1'
local bkey, index = KEYS[n + 1], KEYS[n + 2]
if has_breaker then
  local st = redis.call('HMGET', bkey, 'opened_at', 'cooldown', 'label', 'reason')
  if st[1] then
    local cooldown = tonumber(st[2])
    if cooldown > 0 and now >= tonumber(st[1]) + cooldown then
      redis.call('DEL', bkey)
      redis.call('SREM', index, bkey)
    else
      return {'breaker', 0, strings(lv), st[1], st[2], st[3], st[4]}
    end
  end
end
for i = 1, n do
  if lv[i] < cost then
    if has_breaker then
      local reason = ARGV[b + 3]
      local s, e = string.find(reason, '{window}', 1, true)
      if s then reason = string.sub(reason, 1, s - 1) .. ARGV[b + 5 + i] .. string.sub(reason, e + 1) end
      redis.call('HSET', bkey, 'opened_at', ARGV[1], 'cooldown', ARGV[b + 1], 'label', ARGV[b + 2],
                 'reason', reason)
      redis.call('SADD', index, bkey)
      return {'tripped', i, strings(lv), ARGV[1], ARGV[b + 1], ARGV[b + 2], reason}
    end
    return {'short', i, strings(lv)}
  end
end
if ARGV[b + 5] == '1' then return {'ok', 0, strings(lv)} end
local grace = tonumber(ARGV[b + 4])
local left = {}
for i = 1, n do
  local cap, rate = tonumber(ARGV[3 + 2 * i - 1]), tonumber(ARGV[3 + 2 * i])
  left[i] = lv[i] - cost
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', left[i]), 'last', ARGV[1])
  redis.call('EXPIRE', KEYS[i], math.ceil((cap - left[i]) / rate) + grace)
end
return {'ok', 0, strings(left)}
"""

_PEEK = _LEVELS + """
return strings(levels(tonumber(ARGV[2]), tonumber(ARGV[1]), 2))
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

# KEYS: records hash, version counter. ARGV: id, expected ('' with ARGV[4]=='0' means absent), value, has_expected
_SWAP = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('INCR', KEYS[2])
return 1
"""


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
        self._take = self.redis.register_script(_TAKE)
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

    async def take(self, buckets: Sequence[Bucket], cost: float, now: float,
                   breaker: BreakerSpec | None = None, reason: str = "", check_only: bool = False) -> TakeResult:
        keys = [self._k("bucket", b.key) for b in buckets]
        args: list[Any] = [repr(float(now)), repr(float(cost)), len(buckets)]
        for b in buckets:
            args += [repr(float(b.capacity)), repr(float(b.rate))]
        if breaker is not None:
            keys += [self._k("breaker", breaker.key), self._index]
            args += ["1", repr(float(breaker.cooldown_seconds)), breaker.label, reason]
        else:
            keys += [self._k("breaker", "-"), self._index]
            args += ["0", "0", "", ""]
        args += [_IDLE_GRACE_SECONDS, "1" if check_only else "0"] + [b.label for b in buckets]
        out = await self._call(self._take, keys, args)
        outcome, index, levels = _text(out[0]), int(out[1]), tuple(float(_text(x)) for x in out[2])
        if outcome == "ok":
            return TakeResult(True, levels)
        state = None
        if outcome in ("breaker", "tripped"):
            assert breaker is not None
            state = BreakerState(breaker.key, _text(out[5]), float(_text(out[3])), _text(out[6]),
                                 float(_text(out[4])))
        if outcome == "breaker":
            return TakeResult(False, levels, breaker=state)
        blocked = index - 1
        return TakeResult(False, levels, blocked, wait_for(levels[blocked], cost, buckets[blocked]), state,
                          tripped=outcome == "tripped")

    async def peek(self, buckets: Sequence[Bucket], now: float) -> tuple[float, ...]:
        args: list[Any] = [repr(float(now)), len(buckets)]
        for b in buckets:
            args += [repr(float(b.capacity)), repr(float(b.rate))]
        out = await self._call(self._peek, [self._k("bucket", b.key) for b in buckets], args)
        return tuple(float(_text(x)) for x in out)

    def _breaker_state(self, redis_key: str, fields: Sequence[Any]) -> BreakerState:
        return BreakerState(redis_key.removeprefix(self._k("breaker", "")), _text(fields[2]),
                            float(_text(fields[0])), _text(fields[3]), float(_text(fields[1])))

    async def breakers(self, now: float) -> list[BreakerState]:
        out = await self._call(self._breakers, [self._index], [repr(float(now))])
        states = [self._breaker_state(_text(row[0]), row[1:]) for row in out]
        return sorted(states, key=lambda b: b.opened_at)

    async def reset_breaker(self, key: str) -> BreakerState | None:
        redis_key = self._k("breaker", key)
        out = await self._call(self._reset, [redis_key, self._index], [])
        return None if not out else self._breaker_state(redis_key, out)

    async def put(self, kind: str, id: str, value: str) -> None:
        await self._call(self._put, [self._k("records", kind), self._k("version", kind)], [id, value])

    async def get(self, kind: str, id: str) -> str | None:
        try:
            value = await self.redis.hget(self._k("records", kind), id)
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e
        return None if value is None else _text(value)

    async def items(self, kind: str) -> dict[str, str]:
        try:
            found = await self.redis.hgetall(self._k("records", kind))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e
        return {_text(k): _text(v) for k, v in found.items()}

    async def swap(self, kind: str, id: str, expected: str | None, value: str) -> bool:
        args = [id, expected or "", value, "0" if expected is None else "1"]
        return bool(await self._call(self._swap, [self._k("records", kind), self._k("version", kind)], args))

    async def version(self, kind: str) -> int:
        try:
            value = await self.redis.get(self._k("version", kind))
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e
        return 0 if value is None else int(value)

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except (RedisError, OSError) as e:
            raise StoreUnavailable(f"Redis at {self._where()} did not answer: {e}") from e

    async def close(self) -> None:
        await self.redis.aclose()
        await self._pool.disconnect()  # a pool handed to Redis() is not closed by it
