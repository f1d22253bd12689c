"""The reservation step of authz: hold the request's estimate in Redis, or refuse it in the client's words.

Runs after :func:`authz.check.authorize` has allowed the request; nothing is served without a hold. A tenant whose
balance Redis does not know yet is loaded from PostgreSQL once and the hold is tried again. Any store failure
is a 503: a missing piece of the money path fails closed.
"""

from __future__ import annotations

from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from lime.catalog import Limits
from lime.money import balances, quota
from lime.money.grant import Grant
from lime.money.quota import Refusal, ReservationRequest, ReserveOutcome
from lime.protocols.errors import QuotaExceeded, RateLimited, ServiceUnavailable, TooLargeForLimit

__all__ = ["hold"]


def _request(grant: Grant, limits: Limits, ttl_seconds: int) -> ReservationRequest:
    return ReservationRequest(
        reservation_id=grant.request_id, tenant_id=grant.tenant_id, key_id=grant.key_id,
        endpoint=grant.endpoint, model=grant.model, upstream=grant.upstream, points=grant.reserved,
        tokens=grant.reserved_tokens, rpm_limit=limits.rpm, tpm_limit=limits.tpm,
        concurrency_limit=limits.concurrency, ttl_seconds=ttl_seconds, exposure=grant.exposure,
        overdraft_limit=limits.overdraft_limit,
    )


async def hold(grant: Grant, limits: Limits, redis: aioredis.Redis, pool: AsyncConnectionPool[Any],
               *, ttl_seconds: int) -> None:
    request = _request(grant, limits, ttl_seconds)
    try:
        outcome = await quota.reserve(redis, request, now=grant.started_at)
        if not outcome.loaded:
            async with pool.connection() as conn:
                await balances.load_into_redis(conn, redis, grant.tenant_id)
            outcome = await quota.reserve(redis, request, now=grant.started_at)
    except (aioredis.RedisError, OSError, psycopg.Error):
        raise ServiceUnavailable("The gateway cannot reserve quota right now; nothing was charged. "
                                 "Please retry shortly.") from None
    _raise_refusal(outcome, grant)


def _raise_refusal(outcome: ReserveOutcome, grant: Grant) -> None:
    if outcome.ok:
        return
    if not outcome.loaded:
        raise ServiceUnavailable("The gateway could not load this tenant's balance; nothing was charged.")
    refusal = outcome.refusal
    if refusal is Refusal.INSUFFICIENT:
        raise QuotaExceeded(
            f"You exceeded your current quota: this request needs {grant.reserved} micro-points "
            "available. Please add points to continue.")
    if refusal is Refusal.RPM:
        raise RateLimited("Rate limit reached: requests per minute for your package.",
                          retry_after=outcome.retry_after, limit="requests")
    if refusal is Refusal.TPM:
        raise RateLimited("Rate limit reached: tokens per minute for your package.",
                          retry_after=outcome.retry_after, limit="tokens")
    if refusal is Refusal.TOO_LARGE:
        # Waiting cannot help: no minute of the package ever has room for it.
        raise TooLargeForLimit(
            f"Request too large: it may use {grant.reserved_tokens} tokens, over your package's tokens "
            "per minute, so it can never be served as it is. Lower `max_tokens` or the input.")
    if refusal is Refusal.OVERDRAFT:
        if outcome.retry_after:
            raise RateLimited(
                "Too many requests whose cost cannot be seen in advance (files the upstream fetches) are in "
                "flight for your balance; retry when one finishes.", retry_after=outcome.retry_after,
                limit="requests")
        raise QuotaExceeded(
            f"You exceeded your current quota: this request needs {grant.reserved} micro-points available, plus "
            f"{grant.exposure} for what it may cost beyond them (a file the upstream fetches, whose size the "
            "gateway cannot see), more than your package lets your balance go below zero. Please add points, or "
            "send the file's content instead of a reference.")
    if refusal is Refusal.CONCURRENCY:
        raise RateLimited("Too many requests in flight for your package; retry when one finishes.",
                          retry_after=outcome.retry_after or 1, limit="requests")
    raise ServiceUnavailable("This request id is already in use; retry the request.")
