"""Small checks shared by the end-to-end tests: SSE parsing, public model ids, raw request headers."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import CATALOG, TenantAccess

#: public id -> the upstream's id for it.
UPSTREAM_MODEL = {public: upstream_model for public, _, upstream_model, _ in CATALOG}


def openai_headers(access: TenantAccess, **extra: str) -> dict[str, str]:
    """Headers for a raw OpenAI-protocol request with a Bearer key."""
    return {"authorization": f"Bearer {access.key}", "x-lime-tenant-id": access.tenant_id,
            "content-type": "application/json", **extra}


def anthropic_headers(access: TenantAccess, **extra: str) -> dict[str, str]:
    """Headers for a raw Anthropic-protocol request with ``x-api-key``."""
    return {"x-api-key": access.key, "x-lime-tenant-id": access.tenant_id, "anthropic-version": "2023-06-01",
            "content-type": "application/json", **extra}


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """``(event name or None, data)`` for each event of an SSE body."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].removeprefix(" "))
        if data:
            events.append((name, "\n".join(data)))
    return events


def sse_json(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body, skipping chat's ``[DONE]``."""
    return [json.loads(data) for _, data in sse_events(text) if data != "[DONE]"]


def models_named(value: Any) -> list[str]:
    """Every ``model`` field anywhere in a JSON value."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "model" and isinstance(child, str):
                found.append(child)
            else:
                found.extend(models_named(child))
    elif isinstance(value, list):
        for item in value:
            found.extend(models_named(item))
    return found


def assert_only_public_model(received: Any, public: str) -> None:
    """A response body (parsed JSON, or SSE text as :meth:`Gateway.http` returns them) names the public model
    wherever it names one, and never the upstream's."""
    upstream = UPSTREAM_MODEL[public]
    raw = received if isinstance(received, str) else json.dumps(received)
    assert upstream not in raw, f"the upstream id {upstream!r} reached the client: {raw[:500]}"
    payloads: list[Any] = sse_json(received) if isinstance(received, str) else [received]
    named = [model for payload in payloads for model in models_named(payload)]
    assert named, "the response names no model at all"
    assert set(named) == {public}, named
