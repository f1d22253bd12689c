"""extproc's access-log service: Envoy's word on who cut a stream (see :mod:`extproc.stream_cuts`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from extproc.stream_cuts import CutReports, ending_for_flags
from lime import envoy_api
from lime.envoy_api import als_grpc

__all__ = ["CutStreamLog"]


class CutStreamLog(als_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    def __init__(self, reports: CutReports) -> None:
        self._reports = reports

    async def StreamAccessLogs(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        async for message in request_iterator:
            for request_id, flags in envoy_api.access_log_flags(message):
                ending = ending_for_flags(flags)
                if ending is not None and request_id:
                    self._reports.report(request_id, ending)
        return envoy_api.ACCESS_LOG_RECEIVED
