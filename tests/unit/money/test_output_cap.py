"""The output a request is reserved for is the output its upstream will be held to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.money.output_cap import CAP_FIELDS, requested_cap, reserved_output_tokens, upstream_cap

DEFAULT = 4096


@pytest.mark.parametrize(("endpoint", "caps", "expected"), [
    ("chat_completions", {"max_tokens": 10}, 10),
    ("chat_completions", {"max_completion_tokens": 10, "max_tokens": 300}, 300),  # either may be honoured
    ("messages", {"max_tokens": 64}, 64),
    # Another protocol's field is not this endpoint's cap: a relay that drops it would not honour it.
    ("messages", {"max_completion_tokens": 1}, None),
    ("responses", {"max_tokens": 1}, None),
    ("responses", {"max_output_tokens": 5, "max_tokens": 1}, 5),
])
def test_only_the_endpoints_own_fields_count(endpoint: str, caps: dict[str, int], expected: int | None) -> None:
    assert requested_cap(endpoint, caps) == expected


def test_a_foreign_cap_cannot_shrink_the_reservation() -> None:
    caps = {"max_completion_tokens": 1, "max_tokens": 64_000}
    assert reserved_output_tokens("messages", caps, 1, DEFAULT) == 64_000
    caps = {"max_tokens": 1}
    assert reserved_output_tokens("responses", caps, 1, DEFAULT) == DEFAULT
    assert upstream_cap("responses", caps, DEFAULT) == DEFAULT  # and the default is what the upstream is held to


def test_every_choice_is_reserved_for() -> None:
    assert reserved_output_tokens("chat_completions", {"max_tokens": 100}, 128, DEFAULT) == 12_800
    assert reserved_output_tokens("chat_completions", {}, 3, DEFAULT) == 3 * DEFAULT


def test_legacy_completions_keep_the_providers_default_of_16() -> None:
    # A client that sets no max_tokens gets the 16 tokens OpenAI documents, not a package's longer default.
    assert upstream_cap("completions", {}, DEFAULT) == 16
    assert reserved_output_tokens("completions", {}, 3, DEFAULT) == 48
    # A package default below it still bounds the hold; a client's own cap stands.
    assert upstream_cap("completions", {}, 10) == 10
    assert reserved_output_tokens("completions", {"max_tokens": 500}, 1, DEFAULT) == 500
    assert upstream_cap("completions", {"max_tokens": 500}, DEFAULT) == 0


def test_embeddings_have_no_output() -> None:
    assert reserved_output_tokens("embeddings", {"max_tokens": 100}, 1, DEFAULT) == 0
    assert upstream_cap("embeddings", {}, DEFAULT) == 0


@given(endpoint=st.sampled_from(sorted(CAP_FIELDS)),
       caps=st.dictionaries(st.sampled_from(["max_completion_tokens", "max_tokens", "max_output_tokens"]),
                            st.integers(1, 10**6)),
       choices=st.integers(1, 16))
def test_the_reservation_covers_what_the_upstream_may_produce(endpoint: str, caps: dict[str, int],
                                                             choices: int) -> None:
    """Whatever the client sends, the upstream (honouring any of the endpoint's own fields, or the one Lime set)
    produces at most what is reserved."""
    set_upstream = upstream_cap(endpoint, caps, DEFAULT)
    honoured = [caps[name] for name in CAP_FIELDS[endpoint] if name in caps] or [set_upstream]
    assert max(honoured) * choices <= reserved_output_tokens(endpoint, caps, choices, DEFAULT)
