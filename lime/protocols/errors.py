"""Lime's error tree. Each class carries the HTTP status and the stable codes a client sees.

    LimeError
    ├── BadRequest            400  body not JSON, model missing, wrong types
    │   └── UnsupportedModel  400  the model exists but not on this endpoint or protocol
    ├── AuthError             401  missing, unknown, revoked or expired key
    ├── PermissionDenied      403  key of another tenant, tenant suspended
    ├── NotFound              404  unknown path, model not granted or unknown
    ├── MethodNotAllowed      405
    ├── Conflict              409  admin: the id is taken
    ├── QuotaExceeded         429  not enough points (Anthropic: 402 billing_error); not retryable
    ├── RateLimited           429  RPM, TPM or concurrency over the package's limit; ``retry-after``
    │   └── TooLargeForLimit  429  one request needs more tokens than the package allows a minute; not retryable
    └── ServiceUnavailable    503  a part of the money path is down: fail closed

A body over the size limit never reaches Python: Envoy answers 413 itself (``local_reply_config``).
Raise these anywhere below the service edge; :mod:`lime.protocols.error_bodies` alone turns one into an OpenAI or an
Anthropic body. Anything else escaping a handler is a bug and is logged as one.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadRequest",
    "Conflict",
    "LimeError",
    "MethodNotAllowed",
    "NotFound",
    "PermissionDenied",
    "QuotaExceeded",
    "RateLimited",
    "ServiceUnavailable",
    "TooLargeForLimit",
    "UnsupportedModel",
]


class LimeError(Exception):
    status: int = 500
    #: Where Anthropic uses another status for the same condition (402 for billing).
    anthropic_status: int | None = None
    #: Seconds after which a retry may succeed, sent as ``retry-after``; ``None``: no header.
    retry_after: int | None = None
    #: ``False``: the same request can never succeed as it is, so the client is told not to retry
    #: (``x-should-retry: false``, which both SDK families honour; they retry 429 and 5xx twice otherwise).
    retryable: bool = True
    #: OpenAI ``error.type`` and ``error.code``; Anthropic ``error.type``.
    openai_type: str = "server_error"
    openai_code: str | None = "internal_error"
    anthropic_type: str = "api_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.openai_code = code


class BadRequest(LimeError):
    status = 400
    openai_type = "invalid_request_error"
    openai_code = "invalid_request"
    anthropic_type = "invalid_request_error"


class UnsupportedModel(BadRequest):
    openai_code = "model_not_supported"


class AuthError(LimeError):
    status = 401
    # OpenAI itself answers a bad key with type invalid_request_error (fixtures: openai-error-401-invalid-api-key)
    openai_type = "invalid_request_error"
    openai_code = "invalid_api_key"
    anthropic_type = "authentication_error"


class PermissionDenied(LimeError):
    status = 403
    openai_type = "permission_error"
    openai_code = "permission_denied"
    anthropic_type = "permission_error"


class NotFound(LimeError):
    status = 404
    openai_type = "invalid_request_error"
    openai_code = "not_found"
    anthropic_type = "not_found_error"


class MethodNotAllowed(LimeError):
    status = 405
    openai_type = "invalid_request_error"
    openai_code = "method_not_allowed"
    anthropic_type = "invalid_request_error"


class Conflict(LimeError):
    status = 409
    openai_type = "invalid_request_error"
    openai_code = "conflict"
    anthropic_type = "invalid_request_error"


class QuotaExceeded(LimeError):
    status = 429
    anthropic_status = 402
    openai_type = "insufficient_quota"
    openai_code = "insufficient_quota"
    anthropic_type = "billing_error"
    # Points come back only when someone adds them: a retry seconds later would be refused the same way.
    retryable = False


class RateLimited(LimeError):
    status = 429
    openai_type = "requests"
    openai_code = "rate_limit_exceeded"
    anthropic_type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int, limit: str = "requests") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # OpenAI names the exhausted limit in `type` (fixtures: openai-error-429-rate-limit-exceeded).
        self.openai_type = limit


class TooLargeForLimit(RateLimited):
    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=0, limit="tokens")
        self.retry_after = None
        self.retryable = False


class ServiceUnavailable(LimeError):
    status = 503
    openai_type = "server_error"
    openai_code = "service_unavailable"
    anthropic_type = "api_error"
