"""authz's HTTP/1.1 server (lime/http1_server.py) on a real Unix socket, spoken to as Envoy does and as Envoy
does not: one request at a time on a kept-alive connection, requests sent back to back, a repeated header, and bytes
that are not HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lime import http1_server
from lime.http1_server import HttpRequest, start_http1
from lime.serving import InFlight
from lime.settings import Address

pytestmark = pytest.mark.asyncio


#: What /hang saw: "started", then "cancelled" if the server stopped it.
HANGS: list[str] = []


async def echo(request: HttpRequest) -> bytes:
    """Answers with what it was asked; slower for /slow, so that answers written out of order would show; fails on
    /bug; never answers /hang."""
    if request.path == "/bug":
        raise RuntimeError("a bug in the handler")
    if request.path == "/hang":
        HANGS.append("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            HANGS.append("cancelled")
            raise
    if request.path == "/slow":
        await asyncio.sleep(0.05)
    body = f"{request.method} {request.path} {request.headers.get('x-tenant', '-')} {len(request.body)}".encode()
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
async def socket_path(tmp_path: Path) -> AsyncIterator[str]:
    path = str(tmp_path / "authz.sock")
    server = await start_http1(Address("", 0, path), echo, InFlight())
    yield path
    server.close()
    await server.wait_closed()


async def read_answers(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    answers = []
    for _ in range(count):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length"))
        answers.append(await reader.readexactly(length))
    return answers


async def test_a_kept_alive_connection_answers_each_request_with_its_body(socket_path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    for body in (b'{"model": "a"}', b"", "ü".encode() * 70_000):
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: authz\r\nx-tenant: t-1\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        assert await read_answers(reader, 1) == [f"POST /v1/chat/completions t-1 {len(body)}".encode()]
    writer.close()


async def test_requests_sent_back_to_back_are_answered_in_order(socket_path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\nGET /fast HTTP/1.1\r\nhost: a\r\n\r\n")
    assert await read_answers(reader, 2) == [b"GET /slow - 0", b"GET /fast - 0"]
    writer.close()


async def test_a_repeated_header_is_joined_as_envoy_joins_it(socket_path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"GET /v1/models HTTP/1.1\r\nhost: a\r\nX-Tenant: one\r\nx-tenant: two\r\n\r\n")
    assert await read_answers(reader, 1) == [b"GET /v1/models one,two 0"]
    writer.close()


async def test_bytes_that_are_not_http_get_a_400_and_the_connection_closes(socket_path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"\x16\x03\x01 this is not http\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
    writer.close()


async def test_connection_close_is_honoured(socket_path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"GET /v1/models HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
    assert (await reader.read()).endswith(b"GET /v1/models - 0")
    writer.close()


async def test_a_failing_handler_is_answered_at_once_and_the_connection_goes_on(socket_path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"GET /bug HTTP/1.1\r\nhost: a\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 500 ")
    writer.write(b"GET /v1/models HTTP/1.1\r\nhost: a\r\n\r\n")
    assert await read_answers(reader, 1) == [b"GET /v1/models - 0"]
    writer.close()


async def test_a_head_request_is_answered_without_a_body(socket_path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"HEAD /v1/models HTTP/1.1\r\nhost: a\r\n\r\nGET /after HTTP/1.1\r\nhost: a\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 19" in head  # "HEAD /v1/models - 0"
    # The next bytes are the next answer, not the HEAD's body.
    assert await read_answers(reader, 1) == [b"GET /after - 0"]
    writer.close()


async def test_a_call_whose_connection_goes_is_stopped(socket_path: str) -> None:
    HANGS.clear()
    _, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(b"GET /hang HTTP/1.1\r\nhost: a\r\n\r\n")
    await writer.drain()
    for _ in range(100):
        if HANGS:
            break
        await asyncio.sleep(0.01)
    writer.close()
    for _ in range(100):
        if HANGS == ["started", "cancelled"]:
            break
        await asyncio.sleep(0.01)
    assert HANGS == ["started", "cancelled"]


@pytest.mark.parametrize("request_bytes", [
    b"GET /chat HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    b"POST /big HTTP/1.1\r\nhost: a\r\ncontent-length: 2000\r\n\r\n" + b"x" * 2000,
], ids=["upgrade", "body over the limit"])
async def test_what_envoy_never_sends_is_refused_and_the_connection_closed(
        socket_path: str, request_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1_server, "MAX_BODY_BYTES", 1000)
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(request_bytes)
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400 ")
    writer.close()
