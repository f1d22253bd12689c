"""Resident memory of the stack's processes, read from /proc (Linux), for tests that bound it."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import Gateway

#: The Python services whose memory the fault and soak tests watch.
PYTHON_SERVICES = ("authz", "extproc", "settler", "catalog_api")


def rss_bytes(pid: int) -> int:
    """The process's resident set size right now (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def service_rss(gateway: Gateway, service: str) -> int:
    process = gateway.stack.services[service].process
    assert process is not None and process.poll() is None, f"{service} is not running"
    return rss_bytes(process.pid)


MIB = 1024 * 1024
