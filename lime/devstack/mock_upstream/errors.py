"""Provider-shaped error bodies, with the ``type``/``code`` each provider pairs with a status.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``. Anthropic:
``{"type": "error", "error": {"type", "message"}, "request_id"}``. The pairings follow the recorded errors in
the fixtures README ("Errors and lists"); a 429 is OpenAI's retryable rate limit, not the quota error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["RECORDED_ERRORS", "RecordedError", "anthropic_error_body", "anthropic_error_type", "openai_error_body",
           "recorded_error"]

# status -> (type, code, message), as the real API sends them.
_OPENAI: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    403: ("request_forbidden", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("tokens", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
}

_ANTHROPIC: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Permission denied"),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed your account's rate limit. Please try again later."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _openai_defaults(status: int) -> tuple[str, str | None, str]:
    if status in _OPENAI:
        return _OPENAI[status]
    if status >= 500:
        return ("server_error", None, "The server is temporarily unable to handle the request.")
    return ("invalid_request_error", None, f"Request failed with status {status}.")


def openai_error_body(status: int, message: str | None = None, *, param: str | None = None) -> dict[str, Any]:
    error_type, code, default_message = _openai_defaults(status)
    return {
        "error": {
            "message": message if message is not None else default_message,
            "type": error_type,
            "param": param,
            "code": code,
        }
    }


def anthropic_error_type(status: int) -> str:
    if status in _ANTHROPIC:
        return _ANTHROPIC[status][0]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error_body(status: int, request_id: str, message: str | None = None) -> dict[str, Any]:
    default_message = _ANTHROPIC[status][1] if status in _ANTHROPIC else f"Request failed with status {status}."
    return {
        "type": "error",
        "error": {"type": anthropic_error_type(status), "message": message if message is not None else default_message},
        "request_id": request_id,
    }


@dataclass(frozen=True)
class RecordedError:
    """An error as a real provider sends it (``x-mock-error-body: <name>``): status and body bytes. ``{model}`` in
    the body is the model the request named, as the providers echo it."""

    status: int
    body: str
    content_type: str = "application/json"


# Copied from tests/fixtures/providers (openai-error-*, anthropic-error-*; their README names the sources),
# plus the shapes the fixtures lack, from the providers' documented errors.
RECORDED_ERRORS: dict[str, RecordedError] = {
    "openai-401-invalid-api-key": RecordedError(401, (
        '{"error":{"message":"Incorrect API key provided: sk-VKMIs***************************************wjh3. You '
        'can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error",'
        '"param":null,"code":"invalid_api_key"}}')),
    "openai-403-unsupported-region": RecordedError(403, (
        '{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not '
        'supported","param":null,"type":"request_forbidden"}}')),
    "openai-400-unsupported-parameter": RecordedError(400, (
        '{\n  "error": {\n    "code": "unsupported_parameter",\n    "message": "Unsupported parameter: '
        "'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.\",\n    "
        '"param": "max_tokens",\n    "type": "invalid_request_error"\n  }\n}\n')),
    "openai-400-context-length-exceeded": RecordedError(400, (
        '{"error":{"message":"This model\'s maximum context length is 128000 tokens. However, your messages '
        'resulted in 130412 tokens. Please reduce the length of the messages.","type":"invalid_request_error",'
        '"param":"messages","code":"context_length_exceeded"}}')),
    # A 400 carrying every identifier a provider's message may hold (the scrubbing's e2e case).
    "openai-400-identifiers": RecordedError(400, (
        '{"error":{"message":"Project proj_Ab12Cd34Ef56 in organization org-XyZ123abc cannot use {model} with key '
        'sk-proj-****abcd (request req_0123456789abcdef); see https://platform.openai.com/docs/models or '
        'api.openai.com.","type":"invalid_request_error","param":"model","code":"model_not_available"}}')),
    "openai-404-model-not-found": RecordedError(404, (
        '{\n    "error": {\n        "message": "The model `{model}` does not exist or you do not have access to '
        'it.",\n        "type": "invalid_request_error",\n        "param": null,\n        "code": '
        '"model_not_found"\n    }\n}\n')),
    "openai-429-insufficient-quota": RecordedError(429, (
        '{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more '
        'information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",'
        '"type":"insufficient_quota","param":null,"code":"insufficient_quota"}}')),
    "openai-429-rate-limit-exceeded": RecordedError(429, (
        '{"error": {"message": "Rate limit reached for gpt-4 in organization org-********** on tokens per min '
        '(TPM): Limit 10000, Used 9348, Requested 5086. Please try again in 26.604s. Visit '
        'https://platform.openai.com/account/rate-limits to learn more.", "type": "tokens", "param": null, '
        '"code": "rate_limit_exceeded"}}')),
    "anthropic-400-invalid-request": RecordedError(400, (
        '{"type":"error","error":{"type":"invalid_request_error","message":"This model does not support effort '
        'level \'xhigh\'. Supported levels: high, low, max, medium."},"request_id":"req_011Ca7jT9AHpgXgdv8igm4z9"}')),
    "anthropic-401-authentication": RecordedError(401, (
        '{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}')),
    "anthropic-403-permission": RecordedError(403, (
        '{"type":"error","error":{"type":"permission_error","message":"Permission denied"},'
        '"request_id":"req_011CX4kyMNYV8HGKS4XAgwkP"}')),
    "anthropic-404-not-found": RecordedError(404, (
        '{"type":"error","error":{"type":"not_found_error","message":"model: {model}"},'
        '"request_id":"req_011CdufXo8Y2LVfY2veyuQWG"}')),
    "anthropic-429-rate-limit": RecordedError(429, (
        '{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your account\'s '
        'rate limit. Please try again later."},"request_id":"req_011CcR9mkMvXdaiWP4739PSN"}')),
    "anthropic-529-overloaded": RecordedError(529, (
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')),
    # No body at all (a proxy's bare refusal).
    "proxy-401-empty": RecordedError(401, ""),
    "proxy-500-empty": RecordedError(500, ""),
    "proxy-429-empty": RecordedError(429, ""),
    # What a proxy in front of a provider answers: not JSON at all.
    "html-502-bad-gateway": RecordedError(502, (
        "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr>"
        "<center>cloudflare</center></body></html>"), content_type="text/html"),
}


def recorded_error(name: str, model: str | None) -> tuple[int, bytes, str] | None:
    """Status, body and content-type of the recorded error ``name``; ``None`` if there is no such one."""
    recorded = RECORDED_ERRORS.get(name)
    if recorded is None:
        return None
    body = recorded.body.replace("{model}", json.dumps(model or "")[1:-1])
    return recorded.status, body.encode(), recorded.content_type
