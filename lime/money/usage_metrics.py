"""The billing team's metrics, counted by the settler when PostgreSQL commits a usage record.

Counting at the commit (and only for records that were new) makes Prometheus agree with the ledger: an event
redelivered after a crash is not counted twice, an event still waiting in Redis is not counted yet. The backlog
gauges are read from Redis when Prometheus scrapes, so they cost nothing between scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lime.money.quota import DEAD_LETTER_STREAM, RESERVATIONS, USAGE_STREAM, UsageEvent

__all__ = ["SettlementBacklog", "count_persisted"]

TOKENS = Counter("lime_tokens", "Tokens settled, by kind: input (uncached), cached_input, cache_write, output",
                 ["tenant", "model", "endpoint", "kind"])
MICROPOINTS = Counter("lime_settled_micropoints", "Points charged, in micro-points (1 point = 1,000,000)",
                      ["tenant", "model"])
SETTLED_REQUESTS = Counter("lime_settled_requests", "Requests settled, by outcome: complete, partial, failed, reaped",
                           ["tenant", "model", "endpoint", "outcome"])

# Drift: how far the charges are from what was reserved for them, and how many are Lime's estimate rather than
# the upstream's report (docs/metrics.md, "Billing drift").
RESERVED = Counter("lime_reserved_micropoints",
                   "Points held for the requests that settled, in micro-points: sum(settled) / sum(reserved) is the "
                   "share of the holds that was charged", ["tenant", "model"])
ESTIMATED = Counter("lime_estimated_requests",
                    "Settled requests charged (in part) by Lime's estimate, not the upstream's usage: cut off, usage "
                    "missing or not reported, an unreadable answer", ["tenant", "model", "endpoint"])
OVERDRAFT = Counter("lime_overdraft_micropoints",
                    "Points charged beyond the request's hold, in micro-points: what the reservation could not see "
                    "(the balance may go below zero by this)", ["tenant", "model"])
#: Charged / held per request: near 0 for a short answer to a large cap, 1 when the cap was used, above 1 when the
#: input estimate was short.
#: A part of a usage the model's price sheet had no price for, charged at its highest rate (lime.money.pricing).
UNPRICED = Counter("lime_unpriced_usage", "Settled requests with a usage part the price sheet had no price for, "
                   "charged at the model's highest rate: part is cache_write_1h, audio_input, audio_output, "
                   "service_tier or tool:<name>", ["model", "part"])
SETTLED_TO_RESERVED = Histogram("lime_settled_to_reserved_ratio", "Per request, the points charged / the points held",
                                ["model"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.1, 1.5, 2.0, 5.0))


def count_persisted(event: UsageEvent) -> None:
    """Count one usage record PostgreSQL has just committed for the first time."""
    labels = (event.tenant_id, event.model, event.endpoint)
    SETTLED_REQUESTS.labels(*labels, event.outcome).inc()
    for kind, tokens in (("input", event.input_tokens), ("cached_input", event.cached_input_tokens),
                         ("cache_write", event.cache_write_tokens), ("cache_write_1h", event.cache_write_1h_tokens),
                         ("output", event.output_tokens)):
        if tokens:
            TOKENS.labels(*labels, kind).inc(tokens)
    if event.cost:
        MICROPOINTS.labels(event.tenant_id, event.model).inc(event.cost)
    for part in event.unpriced:
        UNPRICED.labels(event.model, part).inc()
    if event.outcome == "reaped":
        return  # released by rule, nothing charged or estimated: no drift to speak of
    if event.reserved:
        RESERVED.labels(event.tenant_id, event.model).inc(event.reserved)
        SETTLED_TO_RESERVED.labels(event.model).observe(event.cost / event.reserved)
    if event.estimated:
        ESTIMATED.labels(*labels).inc()
    if event.cost > event.reserved:
        OVERDRAFT.labels(event.tenant_id, event.model).inc(event.cost - event.reserved)


class SettlementBacklog(Collector):
    """Reservations open and the usage events not yet in PostgreSQL, read from Redis at each scrape.

    A scrape that cannot reach Redis reports none of them: the gauges go absent (an alert on ``absent()`` or on
    the settler's own errors tells), rather than a stale or made-up zero."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def collect(self) -> Iterator[Metric]:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(RESERVATIONS)
                pipe.xlen(USAGE_STREAM)
                pipe.xrange(USAGE_STREAM, count=1)
                pipe.xlen(DEAD_LETTER_STREAM)
                open_reservations, depth, oldest, dead = pipe.execute()
        except (redis.RedisError, OSError):
            return
        lag = 0.0
        if oldest:
            entry_id = oldest[0][0]
            millis = int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")[0])
            lag = max(0.0, time.time() - millis / 1000)
        yield GaugeMetricFamily("lime_reservations_open", "Requests holding a reservation now", open_reservations)
        yield GaugeMetricFamily("lime_settlement_queue_depth", "Settled usage events not yet in PostgreSQL", depth)
        yield GaugeMetricFamily("lime_settlement_lag_seconds",
                                "Age of the oldest usage event not yet in PostgreSQL (0 when none)", lag)
        yield GaugeMetricFamily("lime_settlement_dead_letter_depth",
                                "Usage events set aside in lime:usage:dead for an operator", dead)
