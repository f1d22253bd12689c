"""The contract between authz and extproc: what an allowed request carries through Envoy.

authz returns a :class:`Grant` as ext_authz dynamic metadata; Envoy forwards it to extproc (ext_proc
``metadata_options.forwarding_namespaces``). Metadata is written only by filters, so a client cannot forge it;
the internal headers below are stripped from every client request by Envoy before authz runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["INTERNAL_HEADERS", "PINNED_CLUSTER_HEADER", "TENANT_HEADER", "UPSTREAM_HEADER", "VERIFIED_TENANT_HEADER",
           "Grant"]

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

    def to_metadata(self) -> dict[str, str | bool]:
        # Once per request: a flat copy, not dataclasses.asdict's recursive deep copy.
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> Grant | None:
        """``None`` when the metadata is absent or incomplete (e.g. a local reply that authz denied)."""
        if not metadata:
            return None
        try:
            values = {name: metadata[name] for name in _FIELDS}
        except KeyError:
            return None
        for name, kind in _COERCE.items():
            # Struct numbers come back as floats (ENVOY-NOTES pitfall 9).
            values[name] = kind(values[name])
        return cls(**values)


_FIELDS = tuple(f.name for f in fields(Grant))
_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool}
_COERCE: dict[str, type] = {f.name: _TYPES[str(f.type)] for f in fields(Grant) if str(f.type) in _TYPES}
