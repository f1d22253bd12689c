"""SIGTERM is a graceful stop: readiness goes false first, the requests in flight finish and settle."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from lime.settings import Address
from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import record


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a"], points=50_000_000)


def ready(address: Address) -> int:
    """The readiness probe's answer; 0 when nothing answers (the process is gone)."""
    try:
        with urllib.request.urlopen(f"http://{address}/ready", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


@pytest.mark.parametrize("service", ["extproc", "authz"])
def test_a_stream_in_flight_finishes_and_settles_through_a_sigterm(gateway: Gateway, tenant: TenantAccess,
                                                                   service: str) -> None:
    probe = gateway.settings.extproc_metrics if service == "extproc" else gateway.settings.authz_metrics
    assert ready(probe) == 200
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "a long story"}], stream=True,
        extra_headers={"x-mock-chunks": "30", "x-mock-delay-ms": "100"})
    request_id = raw.headers["x-request-id"]
    stream = raw.parse()
    pieces: list[str] = []
    iterator = iter(stream)
    pieces.extend(c.choices[0].delta.content or "" for c in [next(iterator)] if c.choices)
    process = gateway.stack.services[service].process
    assert process is not None
    process.send_signal(signal.SIGTERM)
    readiness_seen: list[int] = []
    watcher = threading.Thread(target=lambda: readiness_seen.append(ready(probe)))
    time.sleep(0.3)  # let the signal land; the stream still has ~2.5 s to go
    watcher.start()
    try:
        pieces.extend(c.choices[0].delta.content or "" for c in iterator if c.choices)
        watcher.join(5)
        assert process.wait(30) == 0  # it left once its calls were done, not before, and cleanly
    except subprocess.TimeoutExpired:
        # It did not stop in time: kill its group (the test fails) so that the restart below gets a clean slot.
        gateway.stack.stop_service(service, sig=signal.SIGKILL, timeout=10)
        raise
    finally:
        gateway.stack.start_service(service)
    # The whole answer arrived and it was settled as complete. extproc, which carries the stream, said "not ready"
    # while it did; authz had nothing in flight and may already be gone, never "ready" again.
    assert len([p for p in pieces if p]) == 30
    assert readiness_seen == [503] if service == "extproc" else readiness_seen[0] in (503, 0)
    row = record(gateway, request_id)
    assert row["outcome"] == "complete" and row["output_tokens"] >= 30
    gateway.wait_until_served(tenant)
