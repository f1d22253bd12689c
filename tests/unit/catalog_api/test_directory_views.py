from __future__ import annotations

from datetime import UTC, datetime

import pytest

from catalog_api.directory_views import anthropic_model, anthropic_page, openai_list
from lime.catalog import Model
from lime.protocols.endpoints import ModelKind
from lime.protocols.errors import BadRequest

MODELS = [Model(f"m{i}", "u", "x", ModelKind.CHAT, created_at=datetime(2025, 5, i + 1, tzinfo=UTC))
          for i in range(5)]


def test_openai_list_shape() -> None:
    listed = openai_list(MODELS[:1])
    assert listed == {"object": "list", "data": [
        {"id": "m0", "object": "model", "created": int(datetime(2025, 5, 1, tzinfo=UTC).timestamp()),
         "owned_by": "lime"}]}


def test_anthropic_model_shape() -> None:
    assert anthropic_model(MODELS[0]) == {"type": "model", "id": "m0", "display_name": "m0",
                                          "created_at": "2025-05-01T00:00:00Z"}


def page_ids(**kwargs: str | None) -> tuple[list[str], bool]:
    args = {"limit": None, "after_id": None, "before_id": None, **kwargs}
    page = anthropic_page(MODELS, **args)
    ids = [m["id"] for m in page["data"]]
    assert page["first_id"] == (ids[0] if ids else None) and page["last_id"] == (ids[-1] if ids else None)
    return ids, page["has_more"]


def test_anthropic_pagination() -> None:
    assert page_ids() == (["m0", "m1", "m2", "m3", "m4"], False)
    assert page_ids(limit="2") == (["m0", "m1"], True)
    assert page_ids(limit="2", after_id="m1") == (["m2", "m3"], True)
    assert page_ids(limit="2", after_id="m3") == (["m4"], False)
    assert page_ids(limit="2", before_id="m4") == (["m2", "m3"], True)
    assert page_ids(limit="2", before_id="m1") == (["m0"], False)
    assert page_ids(after_id="unknown") == ([], False)


@pytest.mark.parametrize("limit", ["0", "1001", "x"])
def test_bad_limit(limit: str) -> None:
    with pytest.raises(BadRequest):
        anthropic_page(MODELS, limit=limit, after_id=None, before_id=None)
