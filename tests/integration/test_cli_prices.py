"""`lime model update` and `lime model import-prices` as an operator runs them: the rate they convert USD at comes
from LIME_POINTS_PER_USD unless the flag overrides it, and an image count set by hand reaches the sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from tests.integration.conftest import uid
from tests.integration.test_cli import Lime, ok
from tests.integration.test_cli import lime as lime  # the fixture: `lime` on this module's own database

COST_MAP = Path(__file__).resolve().parents[1] / "fixtures" / "litellm" / "model_prices_excerpt.json"
HAIKU = "eu.anthropic.claude-haiku-4-5-20251001-v1:0"  # input $1.1e-06 a token


def _model(lime: Lime) -> str:
    upstream, model = f"up_{uid('p').replace('-', '_')}", uid("m")
    ok(lime("upstream", "add", upstream, "--protocol", "anthropic"))
    ok(lime("model", "add", model, "--upstream", upstream))
    return model


def _prices(database_url: str, model: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT input_price, price_sheet, price_source FROM models WHERE id = %s",
                           (model,)).fetchone()
    assert row is not None
    return {"input_price": row[0], "price_sheet": row[1], "price_source": row[2]}


def test_import_converts_at_the_configured_rate_unless_the_flag_overrides_it(lime: Lime, fresh_database: str) -> None:
    model = _model(lime)
    imported = ["model", "import-prices", model, "--from", HAIKU, "--file", str(COST_MAP), "--apply"]
    ok(lime(*imported, env_overrides={"LIME_POINTS_PER_USD": "7"}))
    row = _prices(fresh_database, model)
    assert row["input_price"] == 7_700_000  # 1.1 USD a million tokens at 7 points per USD
    assert row["price_source"]["points_per_usd"] == "7"
    ok(lime(*imported, "--points-per-usd", "2", env_overrides={"LIME_POINTS_PER_USD": "7"}))
    assert _prices(fresh_database, model)["input_price"] == 2_200_000


def test_image_tokens_are_set_by_hand(lime: Lime, fresh_database: str) -> None:
    model = _model(lime)
    ok(lime("model", "update", model, "--image-tokens", "48000"))
    assert _prices(fresh_database, model)["price_sheet"] == {"image_tokens": 48000}
