"""Where the CLI finds PostgreSQL and Redis when LIME_DATABASE_URL / LIME_REDIS_URL are not set.

``lime up`` records the stores it chose in ``<state dir>/stack.json``, so admin commands in another terminal
reach the same database; without that file the machine's default ports are assumed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from lime.settings import Settings

__all__ = ["DEFAULT_DATABASE_URL", "DEFAULT_REDIS_URL", "record_stores", "with_stores"]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/lime"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _record(settings: Settings) -> Path:
    return settings.state_dir / "stack.json"


def with_stores(settings: Settings) -> Settings:
    recorded: dict[str, str] = {}
    if _record(settings).exists():
        recorded = json.loads(_record(settings).read_text())
    return replace(
        settings,
        database_url=settings.database_url or recorded.get("database_url") or DEFAULT_DATABASE_URL,
        redis_url=settings.redis_url or recorded.get("redis_url") or DEFAULT_REDIS_URL,
    )


def record_stores(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    _record(settings).write_text(json.dumps(
        {"database_url": settings.database_url, "redis_url": settings.redis_url}, indent=2) + "\n")
