"""The model directory in each protocol's list format: pure functions over the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lime.catalog import Model
from lime.protocols.errors import BadRequest

__all__ = ["anthropic_model", "anthropic_page", "openai_list", "openai_model"]

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def _created(model: Model) -> datetime:
    return model.created_at or _EPOCH


def openai_model(model: Model) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": int(_created(model).timestamp()),
            "owned_by": model.owned_by}


def openai_list(models: Sequence[Model]) -> dict[str, Any]:
    return {"object": "list", "data": [openai_model(m) for m in models]}


def anthropic_model(model: Model) -> dict[str, Any]:
    created = _created(model).astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": model.id, "display_name": model.display_name or model.id,
            "created_at": created}


def anthropic_page(models: Sequence[Model], *, limit: str | None, after_id: str | None,
                   before_id: str | None) -> dict[str, Any]:
    """Anthropic pagination: ``limit`` (1-1000, default 20), ``after_id`` / ``before_id`` cursors."""
    try:
        size = 20 if limit is None else int(limit)
    except ValueError:
        raise BadRequest("`limit` must be an integer.", param="limit") from None
    if not 1 <= size <= 1000:
        raise BadRequest("`limit` must be between 1 and 1000.", param="limit")
    ids = [m.id for m in models]
    start, end = 0, len(models)
    if after_id is not None:
        start = ids.index(after_id) + 1 if after_id in ids else len(ids)
        end = min(len(models), start + size)
    elif before_id is not None:
        end = ids.index(before_id) if before_id in ids else 0
        start = max(0, end - size)
    else:
        end = min(len(models), size)
    page = [anthropic_model(m) for m in models[start:end]]
    has_more = end < len(models) if before_id is None else start > 0
    return {"data": page, "has_more": has_more,
            "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None}
