"""The money path in Redis: reserve before a request leaves, settle when it ends, reap what never settled.

Each step is one Lua script, so it is all or nothing and no two requests interleave inside it (DESIGN.md,
"Money path"). Keys, per tenant ``T`` and reservation (= Envoy request id) ``R``::

    lime:points:{T}        hash  balance (micro-points, settled debits applied), held (sum of live reservations),
                                 exposure (sum of their exposures: what each may cost beyond its hold)
    lime:inflight:{T}      int   requests reserved and not settled (the concurrency limit)
    lime:rpm:{T}:<minute>  int   requests reserved in that minute (expires after two)
    lime:tpm:{T}:<minute>  int   tokens reserved in that minute, corrected to the actual count at settlement
    lime:res:{R}           hash  one live reservation: its amounts and what the usage record needs
    lime:reservations      zset  R by deadline: what the reaper walks
    lime:settled:{R}       flag  set once R is settled or reaped: a second settlement is a no-op
    lime:usage             stream usage events, moved to PostgreSQL by the settlement writer

``available = balance - held``; a request is admitted when ``available >= hold`` and ``available - exposure -
hold - its exposure >= -overdraft_limit`` (lime/money/overdraft.py: the overdraft bound). A tenant's ``points``
hash is loaded from PostgreSQL on first use (and rebuilt by ``lime reconcile``); until then reserve answers
``unloaded`` and the caller loads it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from lime.money.usage_event import UsageEvent

__all__ = [
    "USAGE_STREAM",
    "Refusal",
    "ReservationRequest",
    "ReserveOutcome",
    "UsageEvent",
    "adjust_balance",
    "extend",
    "points_key",
    "rebuild",
    "reserve",
    "settle",
    "stream_costs",
]

USAGE_STREAM = "lime:usage"
#: Usage events PostgreSQL refused, set aside by the settlement writer for an operator.
DEAD_LETTER_STREAM = "lime:usage:dead"
RESERVATIONS = "lime:reservations"
#: How long a settlement marker is kept: longer than any redelivery of the same settlement.
SETTLED_MARKER_SECONDS = 86_400


def points_key(tenant_id: str) -> str:
    return f"lime:points:{{{tenant_id}}}"


def inflight_key(tenant_id: str) -> str:
    return f"lime:inflight:{{{tenant_id}}}"


def window(now: float) -> int:
    return int(now // 60)


def rpm_key(tenant_id: str, minute: int) -> str:
    return f"lime:rpm:{{{tenant_id}}}:{minute}"


def tpm_key(tenant_id: str, minute: int) -> str:
    return f"lime:tpm:{{{tenant_id}}}:{minute}"


def reservation_key(reservation_id: str) -> str:
    return f"lime:res:{{{reservation_id}}}"


def settled_key(reservation_id: str) -> str:
    return f"lime:settled:{{{reservation_id}}}"


class Refusal(StrEnum):
    INSUFFICIENT = "insufficient"
    RPM = "rpm"
    TPM = "tpm"
    TOO_LARGE = "too_large"  # one request needs more tokens than the TPM limit allows in a minute
    CONCURRENCY = "concurrency"
    DUPLICATE = "duplicate"
    #: Its cost beyond the hold (a fetched file) would not fit the package's overdraft bound: retryable when
    #: other such requests are in flight (``retry_after`` > 0), not when the balance could never cover it.
    OVERDRAFT = "overdraft"


@dataclass(frozen=True)
class ReservationRequest:
    reservation_id: str
    tenant_id: str
    key_id: str
    endpoint: str
    model: str
    upstream: str
    points: int
    tokens: int
    rpm_limit: int | None
    tpm_limit: int | None
    concurrency_limit: int | None
    ttl_seconds: int
    #: What the request may cost beyond ``points`` (lime/money/overdraft.py), and how far below zero the
    #: package lets the tenant go for such costs.
    exposure: int = 0
    overdraft_limit: int = 0


@dataclass(frozen=True)
class ReserveOutcome:
    refusal: Refusal | None
    retry_after: int = 0
    minute: int = 0
    loaded: bool = True

    @property
    def ok(self) -> bool:
        return self.refusal is None and self.loaded


_RESERVE = """
local points, res, zset, inflight, rpm, tpm = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local rid, estimate, tokens = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm_limit, tpm_limit, conc_limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now, deadline, retry = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local exposure, overdraft_limit = tonumber(ARGV[11]), tonumber(ARGV[12])
if redis.call('EXISTS', points) == 0 then return {'unloaded', 0} end
if redis.call('EXISTS', res) == 1 or redis.call('EXISTS', KEYS[7]) == 1 then return {'duplicate', 0} end
if rpm_limit > 0 and tonumber(redis.call('GET', rpm) or '0') >= rpm_limit then return {'rpm', retry} end
if tpm_limit > 0 then
  if tokens > tpm_limit then return {'too_large', 0} end
  if tonumber(redis.call('GET', tpm) or '0') + tokens > tpm_limit then return {'tpm', retry} end
end
if conc_limit > 0 and tonumber(redis.call('GET', inflight) or '0') >= conc_limit then
  return {'concurrency', 1}
end
local money = redis.call('HMGET', points, 'balance', 'held', 'exposure')
local balance, held, exposed = tonumber(money[1] or '0'), tonumber(money[2] or '0'), tonumber(money[3] or '0')
if balance - held < estimate then return {'insufficient', 0} end
-- The worst case of everything in flight, this request included, must leave the tenant at or above
-- -overdraft_limit. Retryable only while other exposed requests are in flight: they settle and free it.
if balance - held - exposed - estimate - exposure < -overdraft_limit then
  if exposed > 0 then return {'overdraft', 1} end
  return {'overdraft', 0}
end
if exposure > 0 then redis.call('HINCRBY', points, 'exposure', ARGV[11]) end
-- Amounts are written from their ARGV strings: Lua prints large numbers as 1e+15, which Redis refuses.
redis.call('HINCRBY', points, 'held', ARGV[2])
redis.call('HSET', res, 'points', ARGV[2], 'tokens', ARGV[3], 'tpm_key', tpm, 'deadline', deadline,
           'fields', ARGV[10], 'exposure', ARGV[11])
redis.call('EXPIRE', res, math.max(1, math.ceil(deadline - now)) + 86400)
redis.call('ZADD', zset, deadline, rid)
redis.call('INCR', inflight)
redis.call('INCR', rpm)
redis.call('EXPIRE', rpm, 120)
redis.call('INCRBY', tpm, ARGV[3])
redis.call('EXPIRE', tpm, 120)
return {'ok', 0}
"""

# Settle and reap are one script: whichever comes first for a reservation wins, the other is a no-op.
_SETTLE = """
local points, res, zset, inflight, settled, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local rid, cost, tokens, event, only_expired_at = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4],
  tonumber(ARGV[5])
if redis.call('EXISTS', settled) == 1 then return 0 end
local held = redis.call('HMGET', res, 'points', 'tokens', 'tpm_key', 'deadline', 'exposure')
if only_expired_at > 0 and (held[4] == false or tonumber(held[4]) > only_expired_at) then return -1 end
local loaded = redis.call('EXISTS', points) == 1
if held[1] then
  -- '-0' is no integer to Redis: a hold of nothing (a free model, count_tokens) has nothing to release.
  if loaded and held[1] ~= '0' then redis.call('HINCRBY', points, 'held', '-' .. held[1]) end
  if loaded and held[5] and held[5] ~= '0' then redis.call('HINCRBY', points, 'exposure', '-' .. held[5]) end
  if tonumber(redis.call('GET', inflight) or '0') > 0 then redis.call('DECR', inflight) end
  if redis.call('EXISTS', held[3]) == 1 then redis.call('INCRBY', held[3], tokens - tonumber(held[2])) end
  redis.call('DEL', res)
  redis.call('ZREM', zset, rid)
end
if loaded and cost ~= 0 then redis.call('HINCRBY', points, 'balance', '-' .. ARGV[2]) end
redis.call('XADD', stream, '*', 'event', event)
redis.call('SET', settled, '1', 'EX', ARGV[6])
return 1
"""

# A long stream pushes its deadline out, so the reaper leaves a request alone while its answer still flows.
_EXTEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'deadline', ARGV[2])
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
return 1
"""

_ADJUST = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'balance', ARGV[1]) return 1 end
return 0
"""

# Rebuild one tenant's counters: balance = PostgreSQL's minus what the stream still owes it (``owed``, computed by
# the caller for the entries up to ``after``, plus whatever this tenant settled since); held and in-flight from
# the live reservations. O(stream + reservations): an admin step and a first-use step, never per request.
_REBUILD = """
local points, inflight, stream, zset = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local tenant, pg_balance, owed, after = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local start = '-'
if after ~= '' then start = '(' .. after end
for _, entry in ipairs(redis.call('XRANGE', stream, start, '+')) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'event' then
      local event = cjson.decode(fields[i + 1])
      if event.tenant_id == tenant then owed = owed + event.cost end
    end
  end
end
local held, exposure, count = 0, 0, 0
for _, rid in ipairs(redis.call('ZRANGE', zset, 0, -1)) do
  local res = 'lime:res:{' .. rid .. '}'
  local raw = redis.call('HGET', res, 'fields')
  if raw and cjson.decode(raw).tenant_id == tenant then
    held = held + tonumber(redis.call('HGET', res, 'points'))
    exposure = exposure + tonumber(redis.call('HGET', res, 'exposure') or '0')
    count = count + 1
  end
end
local balance = string.format('%d', pg_balance - owed)
redis.call('HSET', points, 'balance', balance, 'held', string.format('%d', held),
           'exposure', string.format('%d', exposure))
redis.call('SET', inflight, count)
return {balance, string.format('%d', held), count}
"""


# Redis names scripts by their SHA-1 (an identifier here, not a security measure).
_SHA1 = {script: hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
         for script in (_RESERVE, _SETTLE, _EXTEND, _ADJUST, _REBUILD)}


async def _run(redis: aioredis.Redis, script: str, keys: list[str], args: list[str | int | float]) -> Any:
    """EVALSHA, so the hot path sends a digest instead of the script; EVAL once when Redis does not know it yet
    (a restarted or flushed Redis)."""
    try:
        return await redis.evalsha(_SHA1[script], len(keys), *keys, *args)
    except NoScriptError:
        return await redis.eval(script, len(keys), *keys, *args)


async def reserve(redis: aioredis.Redis, request: ReservationRequest, *, now: float | None = None) -> ReserveOutcome:
    now = time.time() if now is None else now
    minute = window(now)
    tenant = request.tenant_id
    fields = json.dumps({"tenant_id": tenant, "key_id": request.key_id, "endpoint": request.endpoint,
                         "model": request.model, "upstream": request.upstream, "started_at": now})
    keys = [points_key(tenant), reservation_key(request.reservation_id), RESERVATIONS, inflight_key(tenant),
            rpm_key(tenant, minute), tpm_key(tenant, minute), settled_key(request.reservation_id)]
    args: list[str | int | float] = [
        request.reservation_id, request.points, request.tokens, request.rpm_limit or 0, request.tpm_limit or 0,
        request.concurrency_limit or 0, now, now + request.ttl_seconds, max(1, 60 - int(now % 60)), fields,
        request.exposure, request.overdraft_limit]
    verdict, retry_after = await _run(redis, _RESERVE, keys, args)
    verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
    if verdict == "unloaded":
        return ReserveOutcome(None, loaded=False, minute=minute)
    if verdict == "ok":
        return ReserveOutcome(None, minute=minute)
    return ReserveOutcome(Refusal(verdict), retry_after=int(retry_after), minute=minute)


async def settle(redis: aioredis.Redis, event: UsageEvent, *, tpm_tokens: int | None = None,
                 only_if_expired_at: float = 0) -> int:
    """Release the hold, debit ``event.cost``, append the event; 1 done, 0 already settled, -1 not yet expired.

    ``tpm_tokens`` corrects the minute's token count from the estimate to what was used.
    """
    tenant = event.tenant_id
    keys = [points_key(tenant), reservation_key(event.request_id), RESERVATIONS, inflight_key(tenant),
            settled_key(event.request_id), USAGE_STREAM]
    tokens = event.tokens if tpm_tokens is None else tpm_tokens
    args: list[str | int | float] = [
        event.request_id, event.cost, tokens, event.encode(), only_if_expired_at, SETTLED_MARKER_SECONDS]
    return int(await _run(redis, _SETTLE, keys, args))


async def extend(redis: aioredis.Redis, reservation_id: str, deadline: float) -> bool:
    """Move a live reservation's deadline; ``False`` when it is already settled or reaped."""
    keys = [reservation_key(reservation_id), RESERVATIONS]
    return bool(await _run(redis, _EXTEND, keys, [reservation_id, deadline]))


async def expired_reservations(redis: aioredis.Redis, now: float, limit: int = 100) -> list[str]:
    ids = await redis.zrangebyscore(RESERVATIONS, "-inf", now, start=0, num=limit)
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


async def reservation_fields(redis: aioredis.Redis, reservation_id: str) -> Mapping[str, Any] | None:
    raw = await redis.hget(reservation_key(reservation_id), "fields")
    if raw is None:
        return None
    reserved = await redis.hget(reservation_key(reservation_id), "points")
    fields: dict[str, Any] = json.loads(raw)
    fields["reserved"] = int(reserved or 0)
    return fields


async def adjust_balance(redis: aioredis.Redis, tenant_id: str, amount: int) -> bool:
    """Add ``amount`` to a loaded balance (a grant); an unloaded one will be read from PostgreSQL anyway."""
    return bool(await _run(redis, _ADJUST, [points_key(tenant_id)], [amount]))


async def stream_costs(redis: aioredis.Redis, tenant_id: str) -> tuple[dict[str, int], str]:
    """The tenant's settled costs Redis has applied and PostgreSQL may not have, by request id: those still in
    the usage stream (some may already be committed: the writer deletes an entry just after its commit) and those
    set aside in the dead-letter stream. Also the last usage-stream entry id read ('' for an empty stream)."""
    costs: dict[str, int] = {}
    last = ""
    for stream in (DEAD_LETTER_STREAM, USAGE_STREAM):
        entries: Any = await redis.xrange(stream)
        for entry_id, fields in entries:
            if stream == USAGE_STREAM:
                last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            try:
                event = json.loads(fields.get(b"event") or b"null")
                if isinstance(event, dict) and event.get("tenant_id") == tenant_id:
                    costs[str(event["request_id"])] = int(event["cost"])
            except (ValueError, TypeError, KeyError):
                continue  # an event no one can read was never charged by a script that could
    return costs, last


async def rebuild(redis: aioredis.Redis, tenant_id: str, pg_balance: int, *, owed: int = 0,
                  after: str = "") -> dict[str, int]:
    """Set the tenant's counters: ``pg_balance - owed`` minus anything it settled after entry ``after``."""
    keys = [points_key(tenant_id), inflight_key(tenant_id), USAGE_STREAM, RESERVATIONS]
    balance, held, count = await _run(redis, _REBUILD, keys, [tenant_id, pg_balance, owed, after])
    return {"balance": int(balance), "held": int(held), "in_flight": int(count)}
