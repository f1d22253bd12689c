"""Who cut a stream that ended early: the client or the upstream. Envoy's access log says; extproc cannot.

When a client goes away and when an upstream dies mid-answer, Envoy ends the ext_proc stream the same way, so
the tap only knows that the answer stopped short. Envoy's response flags on the request tell the two apart;
``envoy/envoy.yaml`` sends the requests that carry one of them to extproc's access-log service. This module
maps flags to an :class:`~extproc.request_metrics.Ending` (pure) and joins the two reports, which arrive in
either order, by request id. In a pool of processes Envoy may tell another process than the one reading the stream:
:mod:`extproc.cut_relay` passes such reports on.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable

from extproc.request_metrics import Ending
from lime.metrics import Outcome

__all__ = ["CUT_BY_CLIENT", "CUT_BY_UPSTREAM", "TIMED_OUT", "CutReports", "ending_for_flags"]


CUT_BY_CLIENT = Ending(Outcome.CLIENT_CANCELLED)
CUT_BY_UPSTREAM = Ending(Outcome.UPSTREAM_ERROR, "stream_cut")
TIMED_OUT = Ending(Outcome.UPSTREAM_ERROR, "timeout")

# Envoy's ResponseFlags fields (envoy.data.accesslog.v3), by whose doing they are.
_CLIENT_FLAGS = frozenset({"downstream_connection_termination", "downstream_remote_reset",
                           "downstream_protocol_error"})
_TIMEOUT_FLAGS = frozenset({"upstream_request_timeout", "stream_idle_timeout"})
_UPSTREAM_FLAGS = frozenset({"upstream_connection_termination", "upstream_remote_reset", "upstream_protocol_error"})


def ending_for_flags(flags: Iterable[str]) -> Ending | None:
    """The ending Envoy's flags describe; the client's doing wins (an upstream reset that follows a client's
    leaving is a consequence). ``None`` when no flag says who cut the stream."""
    present = set(flags)
    if present & _CLIENT_FLAGS:
        return CUT_BY_CLIENT
    if present & _TIMEOUT_FLAGS:
        return TIMED_OUT
    if present & _UPSTREAM_FLAGS:
        return CUT_BY_UPSTREAM
    return None


class CutReports:
    """Envoy's reports by request id, kept a little while for the stream that will ask for them.

    Reports nobody asks for (a request that completed just before its client left) are forgotten after
    ``keep_seconds``, so the table stays as small as the number of recent cuts."""

    def __init__(self, keep_seconds: float = 30.0) -> None:
        self._keep = keep_seconds
        self._reports: OrderedDict[str, tuple[float, Ending]] = OrderedDict()
        self._waiting: dict[str, asyncio.Future[Ending]] = {}

    def report(self, request_id: str, ending: Ending, now: float | None = None) -> bool:
        """Hand the report to the stream waiting for it here: ``True`` if one was, else it is kept (``False``)."""
        waiter = self._waiting.pop(request_id, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(ending)
            return True
        now = time.monotonic() if now is None else now
        self._reports[request_id] = (now, ending)
        while self._reports:
            oldest, (at, _) = next(iter(self._reports.items()))
            if now - at <= self._keep:
                break
            del self._reports[oldest]
        return False

    async def wait(self, request_id: str, patience: float) -> Ending | None:
        """Envoy's report for ``request_id``, waiting up to ``patience`` seconds for it; ``None`` if none came."""
        known = self._reports.pop(request_id, None)
        if known is not None:
            return known[1]
        waiter: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        try:
            return await asyncio.wait_for(waiter, patience)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(request_id, None)

    def waiting(self) -> list[str]:
        """The request ids streams here wait for now."""
        return list(self._waiting)

    def __len__(self) -> int:
        return len(self._reports) + len(self._waiting)
