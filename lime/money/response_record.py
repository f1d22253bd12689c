"""The record of one answer the upstream stored (Responses), as Lime keeps it: who owns it and where it lives. Pure.

A continuation (``previous_response_id``) and the lifecycle calls (retrieve, delete, cancel, input items) are
checked against it: only its tenant is served, the request goes to the upstream that holds it (the failover
candidate that answered, not whichever would be picked now), and a continuation reserves the context it carries
on the server (``context_tokens``: the stored response's input and output, which the provider bills again as the
continuation's input).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from lime.money.grant import Grant

__all__ = ["ResponseRecord", "record_of"]


@dataclass(frozen=True)
class ResponseRecord:
    id: str
    tenant_id: str
    key_id: str
    #: The catalog upstream (its route and credential), and the failover candidate of its group that served the
    #: answer ("" when the upstream is a single one).
    upstream: str
    candidate: str
    model: str  # the public id
    upstream_model: str
    #: Input and output of the stored response, as reported (or as settled where not reported).
    context_tokens: int
    created_at: float
    #: ``store: false``: the upstream kept nothing, so nothing can be retrieved or continued.
    stored: bool = True
    deleted: bool = False
    request_id: str = ""

    @property
    def usable(self) -> bool:
        return self.stored and not self.deleted

    def owned_by(self, tenant_id: str) -> bool:
        return self.usable and self.tenant_id == tenant_id

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> ResponseRecord:
        return cls(**json.loads(raw))

    def to_fields(self) -> dict[str, str]:
        """As a Redis hash: every value a string."""
        return {name: str(int(value)) if isinstance(value, bool) else str(value)
                for name, value in asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ResponseRecord:
        return cls(
            id=fields["id"], tenant_id=fields["tenant_id"], key_id=fields["key_id"], upstream=fields["upstream"],
            candidate=fields.get("candidate", ""), model=fields["model"], upstream_model=fields["upstream_model"],
            context_tokens=int(fields["context_tokens"]), created_at=float(fields["created_at"]),
            stored=fields.get("stored", "1") == "1", deleted=fields.get("deleted", "0") == "1",
            request_id=fields.get("request_id", ""))


def record_of(grant: Grant, response_id: str, *, served_by: str | None, context_tokens: int,
              stored: bool) -> ResponseRecord:
    """The record of an answer ``grant`` was served; ``served_by`` is the candidate Envoy names on the answer
    (a failover group's member), or ``None`` for a single upstream."""
    # A continuation already pinned to a candidate stays on it (its answer names the same one).
    candidate = served_by if served_by and served_by != grant.upstream else grant.candidate
    return ResponseRecord(
        id=response_id, tenant_id=grant.tenant_id, key_id=grant.key_id, upstream=grant.upstream,
        candidate=candidate, model=grant.model, upstream_model=grant.upstream_model,
        context_tokens=context_tokens, created_at=grant.started_at, stored=stored, request_id=grant.request_id)
