"""Every error a client can see, each with a stable machine code (the JSON envelope's `code`).

Views and services raise these; error_handlers turns them into
`{"error": {"code", "message", "details"?}}` with their status and headers.
"""

from __future__ import annotations

from typing import Any, ClassVar


class APIError(Exception):
    """Base for errors a client is meant to see; subclasses set code, status and message."""

    status = 400
    code = "bad_request"
    message = "The request could not be processed."
    # Sent with every instance; the `headers` argument adds to or overrides them.
    default_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = {**self.default_headers, **(headers or {})}
        self.details = details


class ServiceUnavailable(APIError):
    status = 503
    code = "service_unavailable"
    message = "The service is temporarily unavailable. Please try again shortly."
    # Every 503 tells clients when to try again.
    default_headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}


class RateLimited(APIError):
    status = 429
    code = "rate_limited"
    message = "Too many requests from your network. Try again later."


class UnsupportedMediaType(APIError):
    status = 415
    code = "unsupported_media_type"
    message = "Send the request body as JSON with Content-Type: application/json."


class MalformedJSON(APIError):
    status = 400
    code = "malformed_json"
    message = "The request body is not valid JSON."


class NotAnObject(APIError):
    status = 422
    code = "validation_failed"
    message = "The request body must be a JSON object."


class ResendCooldown(APIError):
    status = 429
    code = "resend_cooldown"
    message = "A code was sent moments ago. Wait before asking for another."


class HourlyLimitReached(APIError):
    status = 429
    code = "too_many_codes"
    message = "Too many codes were requested for this email. Try again later."


class CodeInvalid(APIError):
    status = 401
    code = "otp_invalid"
    message = "That code is not correct."


class CodeExpired(APIError):
    status = 401
    code = "otp_expired"
    message = "That code has expired or was already used. Request a new one."


class CodeExhausted(APIError):
    status = 401
    code = "otp_attempts_exceeded"
    message = "Too many wrong tries for this code. Request a new one."


class VerificationLocked(APIError):
    status = 429
    code = "verification_locked"
    message = "Too many failed sign-in attempts for this email. Try again later."


class AccountInactive(APIError):
    status = 403
    code = "account_inactive"
    message = "This account is deactivated."


class SignupClosed(APIError):
    status = 403
    code = "signup_closed"
    message = "Sign-up is by invitation only."


class LinkInvalid(APIError):
    status = 400
    code = "link_invalid"
    message = (
        "This sign-in link is not valid. It may have been cut or changed, "
        "or a newer email replaced it."
    )


class LinkExpired(APIError):
    status = 410
    code = "link_expired"
    message = "This sign-in link has expired. Request a new one."


class LinkUsed(APIError):
    status = 410
    code = "link_used"
    message = (
        "The link and the code in that email work once, and one of them was used. "
        "Ask for a new code to sign in again."
    )


class RefreshTokenReused(APIError):
    status = 401
    code = "refresh_token_reused"
    message = (
        "This refresh token was already used. The session has been ended for safety; "
        "sign in again."
    )


class SessionEnded(APIError):
    status = 401
    code = "token_revoked"
    message = "This session has ended. Sign in again."


class SessionNotFound(APIError):
    status = 404
    code = "session_not_found"
    message = "You have no live session with that id."


class Forbidden(APIError):
    status = 403
    code = "forbidden"
    message = "You do not have the role this action needs."
