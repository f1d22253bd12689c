"""A mock OpenAI and Anthropic upstream that answers like the real APIs, for the demo and end-to-end tests.

Replies are deterministic (the same words, usage derived from the prompt's length) so tests can predict the
usage Lime must settle; ``x-mock-*`` request headers steer one request (see :mod:`.config`).
"""

from lime.devstack.mock_upstream.app import MockServer, build_app, main, run, start
from lime.devstack.mock_upstream.config import CHUNKS_HEADER, DELAY_HEADER, STATUS_HEADER, MockConfig
from lime.devstack.mock_upstream.log import LoggedRequest, RequestLog
from lime.devstack.mock_upstream.reply import count_input_tokens, reply_pieces

__all__ = [
    "CHUNKS_HEADER",
    "DELAY_HEADER",
    "STATUS_HEADER",
    "LoggedRequest",
    "MockConfig",
    "MockServer",
    "RequestLog",
    "build_app",
    "count_input_tokens",
    "main",
    "reply_pieces",
    "run",
    "start",
]
