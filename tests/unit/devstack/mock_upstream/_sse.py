"""A minimal SSE reader for the tests, following the framing rules in the fixtures README."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.provider_fixtures import provider_fixture


@dataclass(frozen=True)
class Event:
    event: str | None
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(raw: bytes | str) -> list[Event]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    events: list[Event] = []
    # SDK fixtures end without the blank line, so the last block is flushed too.
    for block in text.split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].removeprefix(" ")
            elif line.startswith("data:"):
                data.append(line[len("data:") :].removeprefix(" "))
        if data:
            events.append(Event(name, "\n".join(data)))
    return events


def fixtures_dir() -> Path:
    return provider_fixture("README.md").parent


def load_json(name: str) -> Any:
    return json.loads((fixtures_dir() / name).read_text())


def load_sse(name: str) -> list[Event]:
    return parse_sse((fixtures_dir() / name).read_bytes())


def key_tree(value: Any) -> Any:
    """The nested key structure of a JSON value, without its scalar values."""
    if isinstance(value, dict):
        return {key: key_tree(child) for key, child in value.items()}
    if isinstance(value, list):
        return [key_tree(value[0])] if value and isinstance(value[0], (dict, list)) else []
    return None
