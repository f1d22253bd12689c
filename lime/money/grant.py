"""The contract between authz and extproc: what an allowed request carries through Envoy.

authz returns a :class:`Grant` as ext_authz dynamic metadata; Envoy forwards it to extproc (ext_proc
``metadata_options.forwarding_namespaces``). Metadata is written only by filters, so a client cannot forge it;
the internal headers below are stripped from every client request by Envoy before authz runs.
"""

from __future__ import annotations

import json
import operator
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["INTERNAL_HEADERS", "LOGGED_FIELDS", "PACKED_KEY", "PINNED_CLUSTER_HEADER", "TENANT_HEADER",
           "UPSTREAM_HEADER", "VERIFIED_TENANT_HEADER", "Grant"]

#: The client's tenant header; removed before the request leaves for an upstream.
TENANT_HEADER = "x-lime-tenant-id"
#: Set by authz for catalog_api on /v1/models: the tenant whose key was verified.
VERIFIED_TENANT_HEADER = "x-lime-verified-tenant"
#: Set by extproc; Envoy routes on it to the upstream's cluster.
UPSTREAM_HEADER = "x-lime-upstream"
#: Set by extproc on a request pinned to one failover candidate (a stored response lives there): Envoy routes it to
#: that candidate's cluster (``candidate_<name>``) alone, without failing over (routes.yaml, ``pinned``).
PINNED_CLUSTER_HEADER = "x-lime-pinned-cluster"
#: Headers only Lime may set. Envoy strips them from client requests (``lime envoy check`` verifies it).
INTERNAL_HEADERS: tuple[str, ...] = (VERIFIED_TENANT_HEADER, UPSTREAM_HEADER, PINNED_CLUSTER_HEADER)


@dataclass(frozen=True)
class Grant:
    request_id: str
    tenant_id: str
    key_id: str
    endpoint: str
    model: str  # the public id the client asked for
    upstream: str
    upstream_model: str
    stream: bool
    # The reservation (its id is the request id) and what settlement needs to price the answer: the prices
    # travel with the grant, so a price change in the catalog never reprices a request in flight.
    reserved: int = 0  # micro-points held
    reserved_tokens: int = 0  # tokens counted against the TPM window
    input_estimate: int = 0  # input tokens the reservation assumed
    exposure: int = 0  # micro-points it may cost beyond the hold (lime/money/overdraft.py)
    output_cap: int = 0  # set on the upstream request when the client sent no cap; 0: the client's stands
    # The model's whole price sheet and the tier the request asked for, as one compact string
    # (lime.money.price_sheet.encode_prices): one metadata value however many parts the sheet has.
    prices: str = ""
    started_at: float = 0.0
    #: The stored response a lifecycle call names (``/v1/responses/{response_id}``); "" otherwise.
    response_id: str = ""
    #: The failover candidate a request is pinned to (the one that holds the stored response it names or
    #: continues); "" lets the group choose.
    candidate: str = ""

    def to_metadata(self) -> dict[str, str]:
        """The grant as ext_authz dynamic metadata: one packed value (:data:`PACKED_KEY`), plus the fields Envoy's
        access log reads by name (:data:`LOGGED_FIELDS`). One Struct field instead of one per grant field: protobuf's
        Struct helpers cost four Python calls per field on each side, and Envoy copies every field onto every
        ext_proc message."""
        return {PACKED_KEY: _ENCODER.encode((_VERSION, *_values(self))), "tenant_id": self.tenant_id,
                "model": self.model}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> Grant | None:
        """``None`` when the metadata is absent or not a grant of this version (e.g. a local reply that authz denied,
        or authz and extproc of different releases during a rollout: the request is then refused, never guessed)."""
        return cls.unpack(metadata.get(PACKED_KEY) if metadata else None)

    @classmethod
    def unpack(cls, packed: object) -> Grant | None:
        """The grant of a :data:`PACKED_KEY` value; ``None`` when it is not one of this version."""
        if not isinstance(packed, str):
            return None
        try:
            version, *values = json.loads(packed)
        except (ValueError, TypeError):
            return None
        if version != _VERSION or len(values) != len(_FIELDS):
            return None
        return cls(*values)


#: The metadata key of the packed grant.
PACKED_KEY = "grant"
#: Grant fields also written as their own metadata keys, for Envoy's access log (``%DYNAMIC_METADATA(...:model)%``).
LOGGED_FIELDS = ("tenant_id", "model")
_FIELDS = tuple(f.name for f in fields(Grant))
#: Every field's value in one C call (once per request, on authz's path).
_values = operator.attrgetter(*_FIELDS)
_ENCODER = json.JSONEncoder(separators=(",", ":"))
#: The packed form is a JSON array in field order, so it names the field list it was written with: a grant packed by
#: another release (fields added, removed or reordered) is refused rather than read into the wrong fields. JSON keeps
#: str, bool, int and float apart, so nothing needs coercing back.
_VERSION = "g1:" + format(zlib.crc32(",".join(f"{f.name}:{f.type}" for f in fields(Grant)).encode()), "08x")
