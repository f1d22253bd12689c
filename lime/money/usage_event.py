"""What one settled request writes: the event settlement makes, Redis carries and PostgreSQL records. Pure.

Apart from :mod:`lime.money.quota` (which sends it through Redis) so that the settlement rules can build one
without importing a Redis client.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from lime.protocols import fast_json

__all__ = ["UsageEvent"]


@dataclass(frozen=True)
class UsageEvent:
    """One settled request, as it travels through the stream to PostgreSQL (``usage_records`` + ``ledger``)."""

    request_id: str
    tenant_id: str
    key_id: str
    endpoint: str
    model: str
    upstream: str
    outcome: str  # complete | partial | failed | reaped
    estimated: bool
    upstream_status: int
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    reserved: int
    cost: int
    started_at: float
    # The parts priced apart (defaults: events written before they existed still decode).
    cache_write_1h_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    server_tool_calls: dict[str, int] = field(default_factory=dict)
    service_tier: str | None = None
    #: Parts charged at the model's highest rate for want of a price (``lime_unpriced_usage_total``).
    unpriced: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return (self.input_tokens + self.cached_input_tokens + self.cache_write_tokens + self.cache_write_1h_tokens
                + self.output_tokens)

    def encode(self) -> str:
        # Plain fields: a dict of them is enough (dataclasses.asdict deep-copies, ~3x the cost). orjson writes
        # non-ASCII as UTF-8 where json.dumps escapes it: the same values for the settler and Redis's cjson.
        fields = {name: getattr(self, name) for name in _EVENT_FIELDS}
        text = fast_json.dumps(fields)
        return json.dumps(fields, separators=(",", ":")) if text is None else text.decode()

    @classmethod
    def decode(cls, raw: bytes | str) -> UsageEvent:
        return cls(**json.loads(raw))


_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(UsageEvent))
