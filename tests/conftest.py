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
from tests.processes import become_subreaper, descendants, kill_tree

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
    # A process whose parent died (the services of a `lime up` killed mid-test) comes back to this one instead of
    # init: it stays a descendant, and the check at the end of the session finds it.
    become_subreaper()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No process the suite started outlives it: any still running now (every fixture has been torn down) fails
    the run, named, and is killed with its process group. A passing run then leaves nothing behind; a failing one
    keeps its logs and data for a look."""
    leftovers = descendants()
    if leftovers:
        kill_tree(leftovers)
        listing = "\n  ".join(str(proc) for proc in leftovers)
        message = f"processes the tests started were still running at the end (killed now):\n  {listing}"
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(message, red=True)
        else:
            print(message)
        session.exitstatus = exitstatus = pytest.ExitCode.TESTS_FAILED
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
    # Its url is the Unix socket, as `lime up` serves its own: the services and the CLI reach it that way in the e2e
    # and CLI tests. Tests that name host and port reach it over TCP.
    data = tmp_path_factory.mktemp("redis") / "data"
    server = EmbeddedRedis(data, free_port(), appendonly=False, unix_socket=data / "redis.sock")
    server.start()
    yield server
    server.stop()
