"""The request path's work budget: Python calls and Redis commands for one chat completion and one short stream
through authz and extproc, in process, against the committed baseline (bench/work_budget.py says what is counted).

Counts, not times, so it does not flake on a busy machine. When a change adds work on purpose, update the baseline
with `python -m bench.work_budget --update` and say why in the commit.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

import authz.check
import extproc.processor
from bench import work_budget
from lime.protocols.request_body import RequestFacts, parse_request_body


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(work_budget.BASELINE.read_text())
    running = ".".join(sys.version.split()[0].split(".")[:2])
    if not data["python"].startswith(running + "."):
        pytest.skip(f"the baseline was counted on Python {data['python']}, this is {running}: call counts differ "
                    "between versions; run `python -m bench.work_budget --update` on the project's Python")
    return data


def test_the_request_path_stays_within_its_work_budget(baseline: dict[str, Any]) -> None:
    problems = work_budget.compare(work_budget.count_scenarios(), baseline)
    assert not problems, "\n".join(problems)


def test_the_counts_do_not_depend_on_the_run() -> None:
    first, second = work_budget.count_scenarios(), work_budget.count_scenarios()
    assert {k: (v["authz_calls"], v["extproc_calls"]) for k, v in first.items()} == \
        {k: (v["authz_calls"], v["extproc_calls"]) for k, v in second.items()}


def test_added_work_on_the_hot_path_is_caught(baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # What a careless change looks like: the body parsed a few more times per request.
    def parse_again(body: bytes, **fields: str) -> RequestFacts:
        for _ in range(3):
            parse_request_body(body, **fields)
        return parse_request_body(body, **fields)

    monkeypatch.setattr(authz.check, "parse_request_body", parse_again)
    problems = work_budget.compare(work_budget.count_scenarios(), baseline)
    assert any("authz_calls" in problem and "over the budget" in problem for problem in problems), problems


def test_one_more_ext_proc_message_is_caught(baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # What a regression looks like: a non-streamed answer read chunk by chunk again, its headers in a message of
    # their own (Envoy's configured mode, no mode_override): 4 messages where 3 did.
    monkeypatch.setattr(extproc.processor, "reads_whole_answer", lambda grant: False)
    problems = work_budget.compare(work_budget.count_scenarios(), baseline)
    assert any(problem.startswith("chat: Envoy sent extproc 4 messages, the baseline 3") for problem in problems), \
        problems
