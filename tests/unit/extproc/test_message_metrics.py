"""Messages counted per stream and handed to Prometheus once: those Envoy waits for apart from the observed ones."""

from __future__ import annotations

from extproc.message_metrics import MESSAGES, OBSERVED_MESSAGES, MessageTally


def counted(phase: str) -> tuple[float, float]:
    return MESSAGES.labels(phase)._value.get(), OBSERVED_MESSAGES.labels(phase)._value.get()


def test_an_observed_streams_messages_are_counted_apart() -> None:
    before = counted("response_body")
    replied, observed = MessageTally(), MessageTally()
    replied.add("response_body", 0.001)
    for _ in range(3):
        observed.add("response_body", 0.0001)
    assert counted("response_body") == before  # nothing until the stream is over
    replied.record()
    observed.record(observed=True)
    assert counted("response_body") == (before[0] + 1, before[1] + 3)
