"""The endpoint specs are the one place that knows an endpoint (issue "The house", docs/architecture.md).

What a newcomer relies on when adding an endpoint: every spec is complete for what it serves, the rest of Lime
finds it by name, and no module outside the specs decides by comparing endpoint names (a missed branch there
would be a silent billing bug).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lime.money.output_cap import CAP_FIELDS, default_cap, reserved_output_tokens, upstream_cap
from lime.protocols.endpoints import ENDPOINTS, PASSED_RESPONSE_HEADERS, Endpoint, endpoint_named
from lime.protocols.output_count import count_output
from lime.protocols.response_tap import ResponseTap

ROOT = Path(__file__).resolve().parents[3]
SPEC_MODULE = ROOT / "lime" / "protocols" / "endpoints.py"
#: Packages whose decisions depend on the endpoint. The mock upstream (lime/devstack) plays the provider, whose
#: paths it answers in its own words.
DECIDING = ("lime", "authz", "extproc", "catalog_api", "settler")
WITH_A_MODEL = [e for e in ENDPOINTS if e.kind is not None]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_spec_is_found_by_its_name(endpoint: Endpoint) -> None:
    assert endpoint_named(endpoint.name) is endpoint


def test_a_name_lime_does_not_serve_has_no_spec_and_reads_nothing() -> None:
    assert endpoint_named("completions_v0") is None
    tap = ResponseTap("completions_v0", "m")
    tap.start(200, "application/json")
    body = b'{"model":"x","usage":{"prompt_tokens":3}}'
    assert tap.feed(body) + tap.finish() == body.replace(b'"x"', b'"m"')
    assert tap.usage is None
    assert count_output("completions_v0", [b'{"choices":[{"message":{"content":"hi"}}]}']) == 0


@pytest.mark.parametrize("endpoint", WITH_A_MODEL, ids=lambda e: e.name)
def test_a_billed_endpoint_reads_usage_from_a_json_answer(endpoint: Endpoint) -> None:
    # One that is not billed (count_tokens, the Responses lifecycle) has no usage to read and nothing to cap or
    # count; only those may come without a body (the lifecycle's, whose model comes from the stored response).
    assert endpoint.has_body or (not endpoint.billed and endpoint.on_stored_answer)
    assert (endpoint.json_usage is not None) == endpoint.billed
    if not endpoint.billed:
        assert (endpoint.cap_fields, endpoint.stream_reader, endpoint.texts) == ((), None, None)


@pytest.mark.parametrize("endpoint", WITH_A_MODEL, ids=lambda e: e.name)
def test_output_is_capped_and_counted_exactly_where_text_comes_back(endpoint: Endpoint) -> None:
    # A cap without a way to count a cut-off answer would bill it 0 output; a text without a cap would be
    # reserved nothing for its output.
    assert bool(endpoint.cap_fields) == (endpoint.texts is not None)
    if endpoint.cap_fields:
        assert CAP_FIELDS[endpoint.name] == endpoint.cap_fields
        assert endpoint.stream_reader is not None
        assert reserved_output_tokens(endpoint.name, {}, 2, 100) == 2 * default_cap(endpoint.name, 100)
        assert upstream_cap(endpoint.name, {}, 100) == default_cap(endpoint.name, 100) > 0
        assert upstream_cap(endpoint.name, {endpoint.cap_fields[-1]: 7}, 100) == 0
    else:
        assert endpoint.name not in CAP_FIELDS
        assert reserved_output_tokens(endpoint.name, {"max_tokens": 9}, 1, 100) == 0


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_no_spec_lets_an_identifying_upstream_header_through(endpoint: Endpoint) -> None:
    assert endpoint.response_headers <= PASSED_RESPONSE_HEADERS
    assert not {h for h in endpoint.response_headers if h.startswith(("openai-", "anthropic-", "x-ratelimit", "set-"))}


def _name_comparisons(path: Path, names: frozenset[str]) -> list[str]:
    """Endpoint names used to decide: compared (``==``, ``in``), or keys of a mapping, in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        operands: list[ast.expr] = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            operands = [key for key in node.keys if key is not None]
        for operand in operands:
            for leaf in ast.walk(operand):
                if isinstance(leaf, ast.Constant) and leaf.value in names:
                    found.append(f"{path.name}:{leaf.lineno}: {leaf.value!r}")
    return found


def test_no_module_outside_the_specs_decides_by_an_endpoint_name() -> None:
    # "models" is also the catalog's table of models, compared as such by the admin API: left out.
    names = frozenset(e.name for e in ENDPOINTS) - {"models"}
    sources = [p for package in DECIDING for p in (ROOT / package).rglob("*.py")
               if p != SPEC_MODULE and "devstack" not in p.parts]
    assert len(sources) > 50
    assert [hit for path in sources for hit in _name_comparisons(path, names)] == []


def test_the_name_check_sees_the_branches_it_forbids(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text('if grant.endpoint == "embeddings":\n    pass\nCAPS = {"responses": 1}\n'
                      'ok = kind in ("messages",)\nlabel = "embeddings"\n')
    hits = _name_comparisons(module, frozenset({"embeddings", "responses", "messages"}))
    assert [hit.split(":", 1)[1] for hit in hits] == ["1: 'embeddings'", "3: 'responses'", "4: 'messages'"]
