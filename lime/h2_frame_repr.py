"""h2's text of each frame it receives, made when a logger writes it instead of for every frame.

h2 logs through ``config.logger`` and formats its lines lazily (``logger.debug("... %d", stream_id)``), except one:
``H2Connection._receive_frame`` calls ``logger.trace("Received frame: %s", repr(frame))``, so the text of every
frame received is built before the call, whatever the logger, and h2's default ``DummyLogger`` then drops it. No
logger configuration avoids that ``repr``. It is not cheap: hyperframe's ``DataFrame`` text serializes the whole
payload again and hexlifies all of it to show 10 bytes (~15 µs for a 16 KiB frame, ~1 ms of extproc CPU for a
request body of 1 MiB), and ~1.3 µs for any other frame (docs/performance.md, "Per-message costs").

That ``repr`` is the only one in ``h2.connection`` (a unit test keeps checking it), so :func:`install` gives the
module a ``repr`` of its own that hands the frame itself to the logger: a logger that writes the line formats it
with ``%s``, which is the same ``repr``, at that moment; one that does not never makes the text.
"""

from __future__ import annotations

import h2.connection

__all__ = ["install", "installed", "uninstall"]


def _the_frame_itself(frame: object) -> object:
    return frame


def installed() -> bool:
    return vars(h2.connection).get("repr") is _the_frame_itself


def install() -> None:
    """Defer h2's per-frame text to the logger (a module global shadows the builtin for h2.connection only)."""
    vars(h2.connection)["repr"] = _the_frame_itself


def uninstall() -> None:
    """Back to h2's eager text (for the benchmark's before/after and the tests)."""
    if installed():
        del vars(h2.connection)["repr"]
