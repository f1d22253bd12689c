"""The contract between authz and extproc: what an allowed request carries through Envoy.

authz returns a :class:`Grant` as ext_authz dynamic metadata; Envoy forwards it to extproc (ext_proc
``metadata_options.forwarding_namespaces``). Metadata is written only by filters, so a client cannot forge it;
the internal headers below are stripped from every client request by Envoy before authz runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["INTERNAL_HEADERS", "TENANT_HEADER", "UPSTREAM_HEADER", "VERIFIED_TENANT_HEADER", "Grant"]

#: The client's tenant header; removed before the request leaves for an upstream.
TENANT_HEADER = "x-lime-tenant-id"
#: Set by authz for catalog_api on /v1/models: the tenant whose key was verified.
VERIFIED_TENANT_HEADER = "x-lime-verified-tenant"
#: Set by extproc; Envoy routes on it to the upstream's cluster.
UPSTREAM_HEADER = "x-lime-upstream"
#: Headers only Lime may set. Envoy strips them from client requests (``lime envoy check`` verifies it).
INTERNAL_HEADERS: tuple[str, ...] = (VERIFIED_TENANT_HEADER, UPSTREAM_HEADER)


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
        values["stream"] = bool(values["stream"])
        return cls(**values)


_FIELDS = tuple(f.name for f in fields(Grant))
