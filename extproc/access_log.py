"""extproc's access-log service: what only Envoy knows, from its two gRPC access logs (``envoy/envoy.yaml``).

``lime_cut_streams``: who cut a stream that ended early (:mod:`extproc.stream_cuts`; passed on to the pool's other
processes by :mod:`extproc.cut_relay`).
``lime_upstream_attempts``: the upstream attempts that failed, failed-over ones included
(:mod:`extproc.upstream_attempts`).
"""

from __future__ import annotations

from collections.abc import Callable

import grpclib.const

from extproc import upstream_attempts
from extproc.request_metrics import Ending
from extproc.stream_cuts import ending_for_flags
from lime.envoy import api as envoy_api
from lime.envoy.api import ACCESS_LOG_METHOD, als_pb
from lime.grpc_server import MessageStream

__all__ = ["CUT_STREAMS_LOG", "UPSTREAM_ATTEMPTS_LOG", "EnvoyLogs"]

CUT_STREAMS_LOG = "lime_cut_streams"
UPSTREAM_ATTEMPTS_LOG = "lime_upstream_attempts"


class EnvoyLogs:
    """``report`` takes who cut which request: :meth:`CutReports.report <extproc.stream_cuts.CutReports.report>`,
    or :meth:`CutRelay.report <extproc.cut_relay.CutRelay.report>` in a pool of processes."""

    def __init__(self, report: Callable[[str, Ending], object]) -> None:
        self._report = report

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {ACCESS_LOG_METHOD: grpclib.const.Handler(self.StreamAccessLogs, grpclib.const.Cardinality.STREAM_UNARY,
                                                         als_pb.StreamAccessLogsMessage,
                                                         als_pb.StreamAccessLogsResponse)}

    async def StreamAccessLogs(self, stream: MessageStream) -> None:
        log_name: str | None = None
        async for message in stream:
            log_name = envoy_api.access_log_name(message) or log_name
            for entry in envoy_api.access_log_entries(message):
                if log_name == UPSTREAM_ATTEMPTS_LOG:
                    upstream_attempts.count(entry)
                    continue
                ending = ending_for_flags(entry.flags)
                if ending is not None and entry.request_id:
                    self._report(entry.request_id, ending)
        await stream.send_message(envoy_api.ACCESS_LOG_RECEIVED)
