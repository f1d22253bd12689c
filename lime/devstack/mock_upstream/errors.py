"""Provider-shaped error bodies, with the ``type``/``code`` each provider pairs with a status.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``. Anthropic:
``{"type": "error", "error": {"type", "message"}, "request_id"}``. The pairings follow the recorded errors in
the fixtures README ("Errors and lists"); a 429 is OpenAI's retryable rate limit, not the quota error.
"""

from __future__ import annotations

from typing import Any

__all__ = ["anthropic_error_body", "anthropic_error_type", "openai_error_body"]

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
