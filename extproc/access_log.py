"""extproc's access-log service: what only Envoy knows, from its two gRPC access logs (``envoy/envoy.yaml``).

``lime_cut_streams``: who cut a stream that ended early (:mod:`extproc.stream_cuts`).
``lime_upstream_attempts``: the upstream attempts that failed, failed-over ones included
(:mod:`extproc.upstream_attempts`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from extproc import upstream_attempts
from extproc.stream_cuts import CutReports, ending_for_flags
from lime import envoy_api
from lime.envoy_api import als_grpc

__all__ = ["CUT_STREAMS_LOG", "UPSTREAM_ATTEMPTS_LOG", "EnvoyLogs"]

CUT_STREAMS_LOG = "lime_cut_streams"
UPSTREAM_ATTEMPTS_LOG = "lime_upstream_attempts"


class EnvoyLogs(als_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    def __init__(self, reports: CutReports) -> None:
        self._reports = reports

    async def StreamAccessLogs(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        log_name: str | None = None
        async for message in request_iterator:
            log_name = envoy_api.access_log_name(message) or log_name
            for entry in envoy_api.access_log_entries(message):
                if log_name == UPSTREAM_ATTEMPTS_LOG:
                    upstream_attempts.count(entry)
                    continue
                ending = ending_for_flags(entry.flags)
                if ending is not None and entry.request_id:
                    self._reports.report(entry.request_id, ending)
        return envoy_api.ACCESS_LOG_RECEIVED
