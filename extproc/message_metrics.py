"""How many messages Envoy sent on each ext_proc stream, and how long extproc took over them.

Counted per stream in plain Python and handed to Prometheus once when the stream ends: an observation costs a lock
and a dozen calls in prometheus_client, and a streamed answer sends one message per chunk. The histogram holds the
slowest message of each phase of each stream, so its quantiles bound the per-message time from above.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["MESSAGES", "MESSAGE_SECONDS", "OBSERVED_MESSAGES", "PHASES", "MessageTally"]

PHASES = ("request_headers", "request_body", "request_trailers", "response_headers", "response_body",
          "response_trailers")

MESSAGES = Counter("lime_extproc_messages", "Messages Envoy sent to extproc and waited for its reply, by phase",
                   ["phase"])
#: The chunks of a stream handed to the observing tap (extproc/stream_modes.py): read, never answered, and no chunk
#: waits for them. Counted apart, so that lime_extproc_messages_total{phase="response_body"} is what Envoy waits for.
OBSERVED_MESSAGES = Counter("lime_extproc_observed_messages",
                            "Messages Envoy sent to extproc's observing tap (no reply), by phase", ["phase"])
MESSAGE_SECONDS = Histogram(
    "lime_extproc_message_seconds",
    "Time extproc spends on one message from Envoy: the slowest of its phase in each stream", ["phase"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1))
_COUNTERS = {phase: MESSAGES.labels(phase) for phase in PHASES}
_OBSERVED = {phase: OBSERVED_MESSAGES.labels(phase) for phase in PHASES}
_TIMERS = {phase: MESSAGE_SECONDS.labels(phase) for phase in PHASES}


class MessageTally:
    """One stream's messages by phase: how many, and the slowest."""

    __slots__ = ("_counts", "_slowest")

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._slowest: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self._counts[phase] = self._counts.get(phase, 0) + 1
        if seconds > self._slowest.get(phase, 0.0):
            self._slowest[phase] = seconds

    def record(self, *, observed: bool = False) -> None:
        """Into Prometheus, once, when the stream is over; ``observed``: the observing tap's stream."""
        counters = _OBSERVED if observed else _COUNTERS
        for phase, count in self._counts.items():
            counter = counters.get(phase)
            if counter is not None:
                counter.inc(count)
                _TIMERS[phase].observe(self._slowest.get(phase, 0.0))
