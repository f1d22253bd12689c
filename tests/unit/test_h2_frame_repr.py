"""h2's per-frame text, deferred to the logger: made only when a line is written, and then the same text."""

from __future__ import annotations

import ast
import inspect
import io
from collections.abc import Iterator

import h2.config
import h2.connection
import hyperframe.frame
import pytest

from lime import h2_frame_repr


@pytest.fixture(autouse=True)
def _as_found() -> Iterator[None]:
    """Each test starts from h2's own behaviour and leaves the process as it found it."""
    was_installed = h2_frame_repr.installed()
    h2_frame_repr.uninstall()
    yield
    (h2_frame_repr.install if was_installed else h2_frame_repr.uninstall)()


def _frames_of_a_stream() -> bytes:
    """A client's preface, a request's headers and a body over two DATA frames (one full 16 KiB frame)."""
    client = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/x"), (":authority", "a")])
    client.send_data(1, bytes(range(256)) * 64)
    client.send_data(1, b"tail", end_stream=True)
    return client.data_to_send()


def _server_receives(data: bytes, logger: h2.config.OutputLogger | None = None) -> None:
    server = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, logger=logger))
    server.initiate_connection()
    server.receive_data(data)


def test_the_only_repr_in_h2_connection_is_an_argument_of_a_log_call() -> None:
    """The module global shadows ``repr`` for all of h2.connection: it must be used nowhere else (checked again
    on every upgrade of h2)."""
    tree = ast.parse(inspect.getsource(h2.connection))
    log_arguments = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and isinstance(node.func, ast.Attribute) and node.func.attr in ("trace", "debug")
                     and ast.unparse(node.func.value) == "self.config.logger" for arg in node.args}
    uses = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name) and node.func.id == "repr"]
    assert uses, "h2 no longer calls repr per frame: lime.h2_frame_repr can go"
    assert all(id(use) in log_arguments for use in uses)
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "repr"
                and not any(node is use.func for use in uses)]


def test_nothing_is_made_when_nothing_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    def made(frame: hyperframe.frame.Frame) -> str:
        raise AssertionError(f"the text of a {type(frame).__name__} was made")

    monkeypatch.setattr(hyperframe.frame.Frame, "__repr__", made)
    with pytest.raises(AssertionError, match="was made"):
        _server_receives(_frames_of_a_stream())
    h2_frame_repr.install()
    _server_receives(_frames_of_a_stream())


def test_a_logger_that_writes_gets_the_same_lines() -> None:
    data = _frames_of_a_stream()
    eager, deferred = io.StringIO(), io.StringIO()
    _server_receives(data, h2.config.OutputLogger(eager, trace_level=True))
    h2_frame_repr.install()
    _server_receives(data, h2.config.OutputLogger(deferred, trace_level=True))
    lines = [line for line in deferred.getvalue().splitlines() if "Received frame" in line]
    assert lines == [line for line in eager.getvalue().splitlines() if "Received frame" in line]
    assert len(lines) == 4  # the preface's settings, the headers, two DATA frames
    assert "Received frame: DataFrame(stream_id=1, flags=[]): <hex:00010203040506070809...>" in lines[-2]


def test_install_and_uninstall() -> None:
    assert not h2_frame_repr.installed()
    h2_frame_repr.install()
    h2_frame_repr.install()
    assert h2_frame_repr.installed()
    h2_frame_repr.uninstall()
    assert "repr" not in vars(h2.connection)
