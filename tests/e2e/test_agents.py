"""Coding agents as clients: Claude Code and Codex CLI (pinned in tests/e2e/agent_clis, installed by
``make agent-clis``) run against Lime through Envoy, offline, with the mock upstream as their model. Each one-shot,
and each with a tool-use round trip: the mock asks for a tool (Claude Code's Read, Codex's exec_command) on a
file in the agent's throwaway working directory, the agent runs it and sends the result back, and the mock's
final answer quotes it. Each must finish (exit 0, the final text in its output), and Lime must have settled every
request it made: each request the mock saw has a usage record, charged where the provider charges.

The mock picks its turn from the conversation alone (lime/devstack/mock_upstream/turns.py), so these tests run
in any order, beside any other.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import record

AGENTS_BIN = Path(__file__).resolve().parents[2] / ".lime" / "agents" / "node_modules" / ".bin"
#: Bounds each agent's run: a hung agent fails its test instead of the suite.
AGENT_TIMEOUT_SECONDS = 90
NOTE = "lime-note-5e1d"
#: Endpoints the provider does not charge: settled, at 0.
FREE = {"count_tokens"}


def agent(name: str) -> Path:
    path = AGENTS_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {AGENTS_BIN}: run `make agent-clis` (needs npm; `make test` does it)")
    return path


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["claude", "chat-a"], points=10**12)


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A throwaway HOME and nothing of the caller's environment but PATH: no real credentials, config or telemetry.
    return subprocess.run(command, cwd=cwd, env={"PATH": os.environ["PATH"], **env}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=AGENT_TIMEOUT_SECONDS, check=False)


def _workspace(tmp_path: Path) -> tuple[Path, Path]:
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    cwd.mkdir()
    (cwd / "note.txt").write_text(NOTE + "\n")
    return home, cwd


def claude_code(gateway: Gateway, tenant: TenantAccess, tmp_path: Path, prompt: str,
                *extra: str) -> subprocess.CompletedProcess[str]:
    home, cwd = _workspace(tmp_path)
    return _run([str(agent("claude")), "-p", prompt, "--output-format", "json", *extra], cwd, {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.origin,
        "ANTHROPIC_AUTH_TOKEN": tenant.key,
        "ANTHROPIC_CUSTOM_HEADERS": f"X-Lime-Tenant-ID: {tenant.tenant_id}",
        # Its own model names are not in the tenant's directory: every call, background ones too, uses ours.
        "ANTHROPIC_MODEL": "claude",
        "ANTHROPIC_SMALL_FAST_MODEL": "claude",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    })


def codex(gateway: Gateway, tenant: TenantAccess, tmp_path: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    home, cwd = _workspace(tmp_path)
    (home / ".codex").mkdir()
    # Codex offers the provider's web_search tool on every request: served on a model without a per-call price
    # for it (docs/billing.md, "Offered, not refused"), as most operators' models are.
    (home / ".codex" / "config.toml").write_text(
        'model = "chat-a"\n'
        'model_provider = "lime"\n'
        "[model_providers.lime]\n"
        'name = "Lime"\n'
        f'base_url = "{gateway.base_url}"\n'
        'env_key = "LIME_API_KEY"\n'
        'wire_api = "responses"\n'
        f'http_headers = {{ "X-Lime-Tenant-ID" = "{tenant.tenant_id}" }}\n')
    return _run([str(agent("codex")), "exec", "--skip-git-repo-check", prompt], cwd,
                {"HOME": str(home), "LIME_API_KEY": tenant.key})


def settled_requests(gateway: Gateway, before: int) -> list[dict[str, Any]]:
    """Every request the mock saw since ``before``, each checked settled by Lime: charged unless free."""
    seen = gateway.mock_requests(after=before)
    assert seen, "the agent never reached the upstream"
    for entry in seen:
        assert entry["status"] == 200, entry["path"]
        row = record(gateway, entry["request_id"])
        assert row["outcome"] == "complete", (entry["path"], row)
        assert (row["cost"] > 0) == (row["endpoint"] not in FREE), (entry["path"], row)
    return seen


def _finished(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, f"exit {run.returncode}\nstdout: {run.stdout[-2000:]}\nstderr: {run.stderr[-2000:]}"
    return run.stdout


def test_claude_code_one_shot(gateway: Gateway, tenant: TenantAccess, tmp_path: Path) -> None:
    before = gateway.mock_request_count()
    result = json.loads(_finished(claude_code(gateway, tenant, tmp_path, "Say hello.")))
    assert result["is_error"] is False
    assert result["result"].startswith("Hello from the mock upstream.")
    seen = settled_requests(gateway, before)
    assert {entry["path"] for entry in seen} <= {"/v1/messages", "/v1/messages/count_tokens"}


def test_claude_code_uses_a_tool_and_sends_its_result_back(gateway: Gateway, tenant: TenantAccess,
                                                           tmp_path: Path) -> None:
    before = gateway.mock_request_count()
    note = tmp_path / "work" / "note.txt"
    prompt = f'Read the note. <mock-tool-call name="Read">{{"file_path": "{note}"}}</mock-tool-call>'
    result = json.loads(_finished(claude_code(gateway, tenant, tmp_path, prompt, "--allowedTools", "Read")))
    assert result["is_error"] is False and NOTE in result["result"]
    assert result["num_turns"] >= 2
    turns = [entry for entry in settled_requests(gateway, before) if entry["path"] == "/v1/messages"]
    # The tool call the mock answered came back as the assistant's turn, and the note as its result.
    last = turns[-1]["body"]["messages"]
    assert any(block.get("type") == "tool_use" and block["name"] == "Read"
               for block in last[-2]["content"] if isinstance(block, dict))
    assert NOTE in json.dumps(last[-1]["content"])


def test_codex_one_shot(gateway: Gateway, tenant: TenantAccess, tmp_path: Path) -> None:
    before = gateway.mock_request_count()
    assert "Hello from the mock upstream." in _finished(codex(gateway, tenant, tmp_path, "Say hello."))
    seen = settled_requests(gateway, before)
    assert {entry["path"] for entry in seen} == {"/v1/responses"}


def test_codex_runs_a_command_and_sends_its_output_back(gateway: Gateway, tenant: TenantAccess,
                                                        tmp_path: Path) -> None:
    before = gateway.mock_request_count()
    prompt = 'Show the note. <mock-tool-call name="exec_command">{"cmd": "cat note.txt"}</mock-tool-call>'
    assert NOTE in _finished(codex(gateway, tenant, tmp_path, prompt))
    first, *_, last = settled_requests(gateway, before)
    # Codex asks for its reasoning encrypted (store: false): the item the mock sent comes back unchanged.
    assert first["body"]["store"] is False and "reasoning.encrypted_content" in first["body"]["include"]
    sent = [item for item in json.loads(first["answer"].split("event: response.completed\ndata: ")[1])
            ["response"]["output"]]
    returned = last["body"]["input"]
    reasoning = next(item for item in sent if item["type"] == "reasoning")
    assert any(item.get("encrypted_content") == reasoning["encrypted_content"] for item in returned)
    call = next(item for item in sent if item["type"] == "function_call")
    output = next(item for item in returned if item.get("type") == "function_call_output")
    assert output["call_id"] == call["call_id"] and NOTE in json.dumps(output["output"])
