"""Usage as the billing team reads it: settled requests summed per tenant and model, since a moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from lime.protocols.errors import BadRequest

__all__ = ["parse_since", "usage_rows"]

Conn = psycopg.AsyncConnection[Any]


def parse_since(text: str | None) -> datetime | None:
    if not text:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    try:
        # ASCII digits only (str.isdigit() takes "²", which int() refuses); an age past year 1 is no time at all.
        if text[-1] in units and text[:-1].isascii() and text[:-1].isdigit():
            return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise BadRequest(f"--since takes an ISO time or an age like 30m, 24h, 7d; got {text[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def usage_rows(conn: Conn, tenant: str | None, since: datetime | None) -> list[dict[str, Any]]:
    """Usage summed per tenant and model: requests, tokens by kind, cost."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT tenant_id, model, count(*) AS requests,"
            " sum(input_tokens)::bigint AS input_tokens, sum(cached_input_tokens)::bigint AS cached_input_tokens,"
            " sum(cache_write_tokens)::bigint AS cache_write_tokens,"
            " sum(cache_write_1h_tokens)::bigint AS cache_write_1h_tokens, sum(output_tokens)::bigint AS output_tokens,"
            " sum(audio_input_tokens)::bigint AS audio_input_tokens,"
            " sum(audio_output_tokens)::bigint AS audio_output_tokens,"
            " coalesce(sum((SELECT sum(value::bigint) FROM jsonb_each_text(server_tool_calls))), 0)::bigint"
            " AS server_tool_calls,"
            " count(*) FILTER (WHERE service_tier IN ('priority', 'flex')) AS tiered,"
            " count(*) FILTER (WHERE cardinality(unpriced) > 0) AS unpriced,"
            " sum(cost)::bigint AS cost, count(*) FILTER (WHERE estimated) AS estimated,"
            " count(*) FILTER (WHERE outcome = 'partial') AS partial,"
            " count(*) FILTER (WHERE outcome = 'failed') AS failed"
            " FROM usage_records WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)"
            " AND (%(since)s::timestamptz IS NULL OR settled_at >= %(since)s)"
            " GROUP BY tenant_id, model ORDER BY tenant_id, model",
            {"tenant": tenant, "since": since})
        return list(await cursor.fetchall())


