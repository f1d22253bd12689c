"""What h2's per-frame debug text costs extproc's HTTP/2 server (issue 19, requirement 3a).

``python -m bench.micro_h2``: h2's server side of ext_proc streams, as grpclib drives it in extproc, timed per
ext_proc message with the frame text h2 builds and without it.

h2 formats its debug lines lazily except one: ``H2Connection._receive_frame`` calls
``logger.trace("Received frame: %s", repr(frame))``, so every frame received is turned into text, and the default
``DummyLogger`` drops it. hyperframe's ``DataFrame`` text hexlifies the whole payload to show 10 bytes.

How: one client connection and one server connection run the streams in lockstep once, recording every chunk of
bytes the server receives (the client's frames, its window updates included). The chunks are then replayed into
fresh server connections that do what grpclib's server does per event (acknowledge what was received, send the
answer's headers, one message per message received, the trailers at the end), and only that replay is timed. h2 is
deterministic, so each replay receives and sends the same frames as the recording. Variants, in one process:

* ``h2 as installed``: what extproc ran before;
* ``frame text deferred``: :func:`lime.h2_frame_repr.install`, what extproc runs now;
* ``no frame text at all``: ``Frame.__repr__`` replaced by a constant, the floor of any fix;
* ``and a C no-op logger``: that, with h2's other (lazily formatted) debug calls going to a C callable instead of
  ``DummyLogger``'s Python methods, to price the calls themselves.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import hyperframe.frame

from lime import h2_frame_repr

__all__ = ["Scenario", "main", "record", "replay"]

# grpclib's server connection (grpclib.server.Server's H2Configuration, grpclib.config's 4 MiB windows).
_WINDOW = 4 * 1024 * 1024
_PATH = b"/envoy.service.ext_proc.v3.ExternalProcessor/Process"
_REQUEST_HEADERS = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", _PATH), (b":authority", b"extproc"),
                    (b"content-type", b"application/grpc"), (b"te", b"trailers"),
                    (b"grpc-timeout", b"200m"), (b"x-envoy-internal", b"true")]
_ANSWER_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]
_TRAILERS = [("grpc-status", "0")]


def _server(logger: Any = None) -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=False, header_encoding="ascii", validate_inbound_headers=False,
                                       validate_outbound_headers=False, normalize_inbound_headers=False,
                                       normalize_outbound_headers=False, logger=logger)
    connection = h2.connection.H2Connection(config=config)
    connection.initiate_connection()
    connection.increment_flow_control_window(_WINDOW - connection.local_settings.initial_window_size)
    connection.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW})
    return connection


def _grpc_message(size: int) -> bytes:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    return b"\x00" + size.to_bytes(4, "big") + payload


@dataclass(frozen=True)
class Scenario:
    """An ext_proc stream: the sizes of the messages Envoy sends and of the answers extproc sends back."""

    name: str
    incoming: tuple[int, ...]
    outgoing: tuple[int, ...]


# A non-streamed chat completion is three messages each way (docs/performance.md, "Fewer messages"): the request
# headers, the request body, the whole response body, each with the forwarded metadata, and their answers; sizes as
# the work budget's chat request serializes them. The second is an agent's request with 256 KiB of context (16 DATA
# frames of 16 KiB, h2's default frame size, which Envoy keeps).
SCENARIOS = (
    Scenario("chat: 3 messages in (728, 504, 1042 bytes), 3 out", (728, 504, 1042), (283, 404, 698)),
    Scenario("agent: 3 messages in, a 256 KiB body, 3 out", (728, 256 * 1024, 1042), (283, 404, 698)),
)


class _Replies:
    """What grpclib's server sends on each stream: the answer's headers, one answer per message, the trailers."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self._answers = [_grpc_message(size) for size in sizes]
        self._sent: dict[int, int] = {}

    def serve(self, server: h2.connection.H2Connection, chunk: bytes) -> bytes:
        """One read: feed h2, acknowledge what was received, answer the message it completed."""
        stream_id, ended = 0, False
        for event in server.receive_data(chunk):
            if isinstance(event, h2.events.RequestReceived):
                self._sent[event.stream_id] = 0
                server.send_headers(event.stream_id, _ANSWER_HEADERS)
            elif isinstance(event, h2.events.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                stream_id = event.stream_id
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        if stream_id:
            sent = self._sent[stream_id]
            server.send_data(stream_id, self._answers[sent])
            self._sent[stream_id] = sent + 1
            if ended:
                server.send_headers(stream_id, _TRAILERS, end_stream=True)
                del self._sent[stream_id]
        return server.data_to_send()


def record(scenario: Scenario, streams: int) -> list[bytes]:
    """The chunks the server receives for ``streams`` streams of ``scenario``: one read per message."""
    client = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    server, replies = _server(), _Replies(scenario.outgoing)
    chunks: list[bytes] = []
    frame = client.max_outbound_frame_size
    for _ in range(streams):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, _REQUEST_HEADERS)
        for index, size in enumerate(scenario.incoming):
            message = _grpc_message(size)
            last = index == len(scenario.incoming) - 1
            for start in range(0, len(message), frame):
                client.send_data(stream_id, message[start:start + frame],
                                 end_stream=last and start + frame >= len(message))
            chunks.append(client.data_to_send())
            for event in client.receive_data(replies.serve(server, chunks[-1])):
                if isinstance(event, h2.events.DataReceived):
                    client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
    return chunks


def replay(scenario: Scenario, chunks: list[bytes], logger: Any = None) -> float:
    """Seconds of CPU one fresh server connection spends on ``chunks``."""
    server, replies = _server(logger), _Replies(scenario.outgoing)
    server.data_to_send()
    started = time.process_time()
    for chunk in chunks:
        replies.serve(server, chunk)
    return time.process_time() - started


class _CNoOpLogger:
    """h2's logger interface with C callables: ``"".format`` takes any arguments, formats none and returns ""."""

    debug = trace = staticmethod("".format)


@contextlib.contextmanager
def _no_frame_text() -> Iterator[None]:
    original = hyperframe.frame.Frame.__repr__
    hyperframe.frame.Frame.__repr__ = lambda self: ""  # type: ignore[method-assign]
    try:
        yield
    finally:
        hyperframe.frame.Frame.__repr__ = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _deferred_frame_text() -> Iterator[None]:
    h2_frame_repr.install()
    try:
        yield
    finally:
        h2_frame_repr.uninstall()


Variant = tuple[str, Callable[[], contextlib.AbstractContextManager[Any]], Any]
VARIANTS: tuple[Variant, ...] = (
    ("h2 as installed", contextlib.nullcontext, None),
    ("frame text deferred (applied)", _deferred_frame_text, None),
    ("no frame text at all (floor)", _no_frame_text, None),
    ("  and a C no-op logger", _no_frame_text, _CNoOpLogger()),
)


def measure(scenario: Scenario, streams: int, repeats: int) -> dict[str, float]:
    """Median µs of server CPU per ext_proc message received, for each variant. The variants take turns, round
    after round, so that a neighbour's load on the shared machine falls on all of them alike."""
    chunks = record(scenario, streams)
    samples: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    for round_ in range(repeats + 1):
        for name, variant, logger in VARIANTS:
            with variant():
                seconds = replay(scenario, chunks, logger)
            if round_:  # the first round warms up
                samples[name].append(seconds)
    messages = streams * len(scenario.incoming)
    return {name: statistics.median(values) / messages * 1e6 for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_h2", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000, help="ext_proc streams per replay (default 1000)")
    parser.add_argument("--repeats", type=int, default=15, help="replays per variant; the median is shown")
    args = parser.parse_args(argv)
    if h2_frame_repr.installed():
        raise SystemExit("lime.h2_frame_repr is installed in this process already: nothing to compare with")
    print(f"µs of CPU per ext_proc message received, h2's server side (h2 {version('h2')}, hyperframe "
          f"{version('hyperframe')}; median of {args.repeats} replays of {args.streams} streams)")
    for scenario in SCENARIOS:
        results = measure(scenario, args.streams, args.repeats)
        before = results[VARIANTS[0][0]]
        print(f"\n{scenario.name}")
        for name, value in results.items():
            print(f"  {name:<40} {value:8.2f}  ({value - before:+.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
