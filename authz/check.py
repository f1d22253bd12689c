"""The authorization decision for one request, apart from gRPC.

Order matters for what a client learns: the path is checked first (404/405 need no key), then the credentials
(401 before anything tenant-specific), then tenant ownership (403), then the body and the model (400/404).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from lime.catalog import Tenant
from lime.directory import Directory
from lime.keys import hash_key, looks_like_key, presented_key
from lime.money.grant import TENANT_HEADER, Grant
from lime.money.modifiers import Modifiers, priced_modifiers
from lime.money.output_cap import reserved_output_tokens, upstream_cap
from lime.money.overdraft import exposure_of
from lime.money.price_sheet import GrantPrices, encode_prices, model_sheet
from lime.money.pricing import Estimate, reservation_estimate
from lime.money.response_record import ResponseRecord
from lime.protocols.endpoints import Endpoint, match_endpoint, path_argument
from lime.protocols.errors import AuthError, PermissionDenied, UnsupportedModel
from lime.protocols.input_estimate import estimate_input
from lime.protocols.request_body import parse_request_body
from lime.protocols.stored_responses import (
    PreviousResponseNotFound,
    ResponseNotFound,
    continuation_of,
    is_response_id,
)

__all__ = ["DirectoryAccess", "RecordLookup", "Verified", "authorize"]

#: The record of a stored response by its id (Redis, then PostgreSQL: lime.money.response_records), or ``None``.
RecordLookup = Callable[[str], Awaitable[ResponseRecord | None]]


async def _no_records(_: str) -> ResponseRecord | None:
    return None


@dataclass(frozen=True)
class DirectoryAccess:
    """The tenant whose key was verified, for requests that need no model (the model directory)."""

    tenant_id: str


@dataclass
class Verified:
    """What :func:`authorize` had verified when it decided: the labels of a refusal's metrics. Each is filled
    only once it is known to be the catalog's (a tenant whose key matched, a model the package routes), so a
    client cannot put arbitrary strings into them."""

    endpoint: str = ""
    tenant: str = ""
    model: str = ""


async def authorize(
    method: str, path: str, headers: Mapping[str, str], body: bytes, directory: Directory,
    *, now: float | None = None, verified: Verified | None = None, records: RecordLookup = _no_records,
) -> Grant | DirectoryAccess:
    verified = Verified() if verified is None else verified
    endpoint = match_endpoint(method, path)
    verified.endpoint = endpoint.name
    secret = presented_key(headers)
    if secret is None:
        raise AuthError(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
            code="missing_api_key",
        )
    tenant_id = headers.get(TENANT_HEADER, "").strip()
    if not tenant_id:
        raise AuthError("You didn't provide a tenant. Send it as the `X-Lime-Tenant-ID` header.",
                        code="missing_tenant")
    # A string that cannot be a key costs no lookup: a flood of garbage never reaches Redis or PostgreSQL.
    record = await directory.key(hash_key(secret)) if looks_like_key(secret) else None
    if record is None:
        raise AuthError("Incorrect API key provided.")
    if not record.active:
        raise AuthError("This API key has been revoked.", code="revoked_api_key")
    if not record.usable(time.time() if now is None else now):
        raise AuthError("This API key has expired.", code="expired_api_key")
    if record.tenant_id != tenant_id:
        raise PermissionDenied("This API key does not belong to the tenant in `X-Lime-Tenant-ID`.",
                               code="tenant_mismatch")
    tenant = await directory.tenant(tenant_id)
    _require_active(tenant)
    assert tenant is not None
    verified.tenant = tenant_id
    if endpoint.kind is None:
        return DirectoryAccess(tenant_id)
    started_at = time.time() if now is None else now
    request_id = headers.get("x-request-id", "")
    if endpoint.on_stored_answer:
        stored = await _owned_record(records, path_argument(endpoint, path), tenant_id, ResponseNotFound)
        verified.model = stored.model
        # Free at the provider: nothing held, but a request of the package's rate like any other.
        return Grant(request_id=request_id, tenant_id=tenant_id, key_id=record.id, endpoint=endpoint.name,
                     model=stored.model, upstream=stored.upstream, upstream_model=stored.upstream_model,
                     stream=False, started_at=started_at, response_id=stored.id, candidate=stored.candidate)
    facts = parse_request_body(body, model_field=endpoint.model_field, stream_field=endpoint.stream_field)
    catalog = directory.catalog
    route = catalog.route(tenant, facts.model, endpoint)
    model = route.model
    verified.model = model.id
    continued = await _continued(endpoint, facts.body, records, tenant_id)
    if continued is not None:
        _require_same_upstream(continued, model.id, route.upstream.id)
    # The reservation covers the output cap the upstream will be held to: the client's, or the package's
    # default, which extproc then sets on the upstream request (so an answer cannot run past its hold).
    default_cap = catalog.limits(tenant).default_max_output_tokens
    answers = endpoint.answers(facts.body) if endpoint.answers is not None else facts.choices
    output_tokens = reserved_output_tokens(endpoint.name, facts.output_caps, answers, default_cap)
    sheet = model_sheet(model.input_price, model.output_price, model.cached_input_price, model.price_parts)
    # A premium tier or a provider tool the sheet has no price for is refused here, before anything is held.
    modifiers = priced_modifiers(endpoint.protocol, facts.body, sheet, model.id) if endpoint.billed else Modifiers()
    # An endpoint the provider does not charge holds nothing (and counts no tokens), but still takes a request.
    # Images at the model's own count where its provider's formula tops out above the default (price sheet).
    seen = estimate_input(facts.body).with_image_tokens(sheet.image_tokens)
    # A continuation's upstream reads the stored context again as input: the record says how large it is.
    context_tokens = continued.context_tokens if continued is not None else 0
    estimate = (reservation_estimate(sheet, seen.tokens + context_tokens, output_tokens, tier=modifiers.tier,
                                     tool_calls=modifiers.tool_calls, cache_write=modifiers.cache_write,
                                     audio_input_tokens=seen.audio_tokens)
                if endpoint.billed else Estimate(0, 0, 0))
    return Grant(
        request_id=request_id,
        tenant_id=tenant_id,
        key_id=record.id,
        endpoint=endpoint.name,
        model=route.model.id,
        upstream=route.upstream.id,
        upstream_model=route.model.upstream_model,
        stream=facts.stream,
        reserved=estimate.points,
        reserved_tokens=estimate.tokens,
        input_estimate=estimate.input_tokens,
        exposure=exposure_of(seen, sheet, modifiers.tier) if endpoint.billed else 0,
        output_cap=upstream_cap(endpoint.name, facts.output_caps, default_cap),
        prices=encode_prices(GrantPrices(sheet, modifiers.tier, server_tools=bool(modifiers.tool_calls))),
        started_at=started_at,
        candidate=continued.candidate if continued is not None else "",
    )


async def _owned_record(records: RecordLookup, response_id: str, tenant_id: str,
                        missing: type[ResponseNotFound] | type[PreviousResponseNotFound]) -> ResponseRecord:
    """The tenant's own stored response, or the error of a missing one: unknown, malformed, deleted, not stored
    and another tenant's ids all take this one path and get the same answer."""
    record = await records(response_id) if is_response_id(response_id) else None
    if record is None or not record.owned_by(tenant_id):
        raise missing(response_id)
    return record


async def _continued(endpoint: Endpoint, body: dict[str, object], records: RecordLookup,
                     tenant_id: str) -> ResponseRecord | None:
    """The stored response a Responses request continues (``previous_response_id``), checked like a lifecycle
    call's, or ``None``."""
    if not endpoint.records_answers:
        return None
    previous = continuation_of(body)
    if previous is None:
        return None
    return await _owned_record(records, previous, tenant_id, PreviousResponseNotFound)


def _require_same_upstream(continued: ResponseRecord, model_id: str, upstream_id: str) -> None:
    """A continuation goes where its context is stored. OpenAI lets it name another model; Lime allows that only
    on the same upstream, and within a failover group only the same model (a candidate serves its own model id,
    so another would silently become the stored one's)."""
    if upstream_id != continued.upstream or (continued.candidate and model_id != continued.model):
        raise UnsupportedModel(
            f"The model `{model_id}` cannot continue response '{continued.id}', which is stored where "
            f"`{continued.model}` is served: continue it with `{continued.model}`, or start a new response.",
            param="model")


def _require_active(tenant: Tenant | None) -> None:
    if tenant is None:
        raise PermissionDenied("This tenant does not exist.", code="unknown_tenant")
    if not tenant.active:
        raise PermissionDenied("This tenant is suspended.", code="tenant_suspended")
