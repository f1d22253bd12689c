"""Where the recorded provider bodies live: ``shared/fixtures/providers`` beside the repository.

Tests fail, never skip, when they are missing: a parser test that silently skipped would prove nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

PROVIDERS = Path(os.environ.get("LIME_PROVIDER_FIXTURES")
                 or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "providers")


def provider_fixture(name: str) -> Path:
    path = PROVIDERS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the provider fixtures belong in ../shared/fixtures/providers "
                                "(or set LIME_PROVIDER_FIXTURES)")
    return path
