"""gRPC edge of extproc: one loop per Envoy stream that owns receive and send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from extproc.processor import StreamProcessor
from extproc.rewrite import CredentialLookup
from lime.envoy_api import proc_grpc
from lime.grpc_server import serve_grpc
from lime.settings import Settings

__all__ = ["ExternalProcessorService", "serve"]


class ExternalProcessorService(proc_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, credential_for: CredentialLookup) -> None:
        self._credential_for = credential_for

    async def Process(self, request_iterator: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        processor = StreamProcessor(self._credential_for)
        async for request in request_iterator:
            yield processor.handle(request)


async def serve(settings: Settings) -> None:
    service = ExternalProcessorService(settings.upstream_credential)
    await serve_grpc(
        str(settings.extproc),
        lambda server: proc_grpc.add_ExternalProcessorServicer_to_server(service, server),
        name="extproc",
    )
