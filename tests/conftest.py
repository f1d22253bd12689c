"""Shared fixtures: throwaway PostgreSQL and Redis servers of the suite's own, started from the machine's
binaries so fault tests can stop and restart them without touching anything else."""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Iterator

import httpcore2
import pytest
from hypothesis import settings

from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

# A shared 2-core CI machine makes per-example timings noisy: hypothesis checks behaviour here, not speed.
settings.register_profile("lime", deadline=None)
settings.load_profile("lime")

# Each SDK client the tests make (test_conservation alone makes 500) builds an httpx client, which loads the
# machine's CA bundle into a TLS context of its own: 25 ms of CPU a client, 13 s of test_conservation's 17. No test
# speaks TLS; the clients share one context, made the same way.
httpcore2.default_ssl_context = functools.cache(httpcore2.default_ssl_context)


def pytest_configure(config: pytest.Config) -> None:
    """Each run gets a temporary folder of its own: pytest's shared numbered folders are pruned by whichever run
    starts next, which pulls the data directories from under the servers of a run still going."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="lime-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A passing run leaves nothing behind; a failing one keeps its logs and data for a look."""
    own = session.config.stash.get(_OWN_BASETEMP, None)
    if own is not None and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()


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
