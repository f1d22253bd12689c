"""Where the recorded provider bodies live: ``tests/fixtures/providers`` (its README names each file's source,
licence and the format facts the tests rely on). Copied from the team's reference material so that a clone of
this repository tests on its own.

Tests fail, never skip, when they are missing: a parser test that silently skipped would prove nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

PROVIDERS = Path(os.environ.get("LIME_PROVIDER_FIXTURES") or Path(__file__).resolve().parent / "fixtures" / "providers")


def provider_fixture(name: str) -> Path:
    path = PROVIDERS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the provider fixtures belong in tests/fixtures/providers "
                                "(or set LIME_PROVIDER_FIXTURES)")
    return path
