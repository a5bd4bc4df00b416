"""Errors of the sign-in flow, each with a stable machine code."""

from __future__ import annotations

from ..errors import APIError


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
