"""The catalog: upstreams, models, packages, brands and tenants, as one immutable snapshot.

Services hold a :class:`Catalog` in memory and swap in a new one when PostgreSQL says the catalog changed
(see :mod:`lime.directory`). Everything here is pure: it answers "which models may this tenant see" and "where
does this request go" from the snapshot alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from lime.protocols.endpoints import Endpoint, ModelKind, Protocol
from lime.protocols.errors import NotFound, PermissionDenied, UnsupportedModel

__all__ = ["Brand", "Catalog", "Limits", "Model", "Package", "Route", "Tenant", "Upstream"]


@dataclass(frozen=True)
class Upstream:
    id: str
    protocol: Protocol
    description: str = ""


@dataclass(frozen=True)
class Model:
    id: str  # the public id clients use
    upstream_id: str
    upstream_model: str  # the id the upstream knows it by
    kind: ModelKind
    display_name: str = ""
    owned_by: str = "lime"
    created_at: datetime | None = None
    # Points (integer micro-points) per million tokens.
    input_price: int = 0
    output_price: int = 0
    cached_input_price: int = 0
    #: The price sheet's other parts (cache writes by lifetime, audio, tiers, long context, tool calls) as canonical
    #: JSON, validated when written (lime.money.price_sheet.model_sheet reads it); "": none.
    price_parts: str = ""


@dataclass(frozen=True)
class Limits:
    """A package's limits per tenant; ``None`` means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    #: The output cap reserved for, and set on the upstream request, when a client sends none.
    default_max_output_tokens: int = 4096
    #: Micro-points a tenant may go below zero for costs its reservations cannot see (lime/money/overdraft.py).
    overdraft_limit: int = 0


@dataclass(frozen=True)
class Package:
    id: str
    name: str
    model_ids: frozenset[str] = frozenset()
    limits: Limits = Limits()


@dataclass(frozen=True)
class Brand:
    id: str
    name: str
    #: ``None``: the brand shows whatever the package grants; a set: only these, intersected with the package.
    model_allowlist: frozenset[str] | None = None


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    package_id: str | None
    brand_id: str | None = None
    active: bool = True


@dataclass(frozen=True)
class Route:
    """Where one allowed request goes."""

    model: Model
    upstream: Upstream


@dataclass(frozen=True)
class Catalog:
    version: int = 0
    upstreams: Mapping[str, Upstream] = field(default_factory=dict)
    models: Mapping[str, Model] = field(default_factory=dict)
    packages: Mapping[str, Package] = field(default_factory=dict)
    brands: Mapping[str, Brand] = field(default_factory=dict)
    tenants: Mapping[str, Tenant] = field(default_factory=dict)

    def tenant(self, tenant_id: str) -> Tenant | None:
        return self.tenants.get(tenant_id)

    def visible_model_ids(self, tenant: Tenant) -> frozenset[str]:
        """The package's grants, narrowed by the tenant's brand where it has an allowlist."""
        package = self.packages.get(tenant.package_id or "")
        granted = package.model_ids if package else frozenset()
        brand = self.brands.get(tenant.brand_id or "")
        if brand is not None and brand.model_allowlist is not None:
            granted = granted & brand.model_allowlist
        return frozenset(model_id for model_id in granted if model_id in self.models)

    def limits(self, tenant: Tenant) -> Limits:
        package = self.packages.get(tenant.package_id or "")
        return package.limits if package else Limits()

    def visible_models(self, tenant: Tenant) -> list[Model]:
        return sorted((self.models[m] for m in self.visible_model_ids(tenant)), key=lambda m: m.id)

    def route(self, tenant: Tenant, model_id: str, endpoint: Endpoint) -> Route:
        """Where ``model_id`` goes for this tenant on this endpoint, or the error the client should see.

        A model the tenant may not see is reported exactly like one that does not exist, so a tenant cannot
        probe another package's catalog.
        """
        if not tenant.active:
            raise PermissionDenied("This tenant is suspended.", code="tenant_suspended")
        if model_id not in self.visible_model_ids(tenant):
            raise NotFound(
                f"The model `{model_id}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        model = self.models[model_id]
        upstream = self.upstreams[model.upstream_id]
        if endpoint.kind is not None and model.kind is not endpoint.kind:
            raise UnsupportedModel(
                f"The model `{model_id}` is a {model.kind} model and is not supported on {endpoint.path}.",
                param="model",
            )
        if upstream.protocol is not endpoint.protocol:
            raise UnsupportedModel(
                f"The model `{model_id}` is served over the {upstream.protocol} protocol and is not "
                f"supported on {endpoint.path}.",
                param="model",
            )
        return Route(model, upstream)
