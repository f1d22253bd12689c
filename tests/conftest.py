"""Shared fixtures: throwaway PostgreSQL and Redis servers of the suite's own, started from the machine's
binaries so fault tests can stop and restart them without touching anything else."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from lime.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

# A shared 2-core CI machine makes per-example timings noisy: hypothesis checks behaviour here, not speed.
settings.register_profile("lime", deadline=None)
settings.load_profile("lime")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", free_port(), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis") / "data", free_port(), appendonly=False)
    server.start()
    yield server
    server.stop()
