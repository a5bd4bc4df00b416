"""Every error a client can see, each with a stable machine code (the JSON envelope's `code`).

Views and services raise these; error_handlers turns them into
`{"error": {"code", "message", "details"?}}` with their status and headers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flask_babel.speaklater import LazyString

from .i18n import lazy_gettext as _


class APIError(Exception):
    """Base for errors a client is meant to see; subclasses set code, status and message."""

    status = 400
    code = "bad_request"
    message = _("The request could not be processed.")
    # Sent with every instance; the `headers` argument adds to or overrides them.
    default_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        message: str | LazyString | None = None,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        # The code, not the message: a message is translated lazily, in a request.
        super().__init__(self.code)
        if message is not None:
            self.message = message
        self.headers = {**self.default_headers, **(headers or {})}
        self.details = details


class ServiceUnavailable(APIError):
    status = 503
    code = "service_unavailable"
    message = _("The service is temporarily unavailable. Please try again shortly.")
    # Every 503 tells clients when to try again.
    default_headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}


class RateLimited(APIError):
    status = 429
    code = "rate_limited"
    message = _("Too many requests from your network. Try again later.")


class UnsupportedMediaType(APIError):
    status = 415
    code = "unsupported_media_type"
    message = _("Send the request body as JSON with Content-Type: application/json.")


class MalformedJSON(APIError):
    status = 400
    code = "malformed_json"
    message = _("The request body is not valid JSON.")


class NotAnObject(APIError):
    status = 422
    code = "validation_failed"
    message = _("The request body must be a JSON object.")


class ResendCooldown(APIError):
    status = 429
    code = "resend_cooldown"
    message = _("A code was sent moments ago. Wait before asking for another.")


class HourlyLimitReached(APIError):
    status = 429
    code = "too_many_codes"
    message = _("Too many codes were requested for this email. Try again later.")


class CodeInvalid(APIError):
    status = 401
    code = "otp_invalid"
    message = _("That code is not correct.")


class CodeExpired(APIError):
    status = 401
    code = "otp_expired"
    message = _("That code has expired. Request a new one.")


class CodeUsed(APIError):
    status = 401
    code = "otp_used"
    message = _("That code was already used. Request a new one to sign in again.")


class CodeSuperseded(APIError):
    status = 401
    code = "otp_superseded"
    message = _("A newer code was sent to you: use the code in the latest email.")


class CodeExhausted(APIError):
    status = 401
    code = "otp_attempts_exceeded"
    message = _("Too many wrong tries for this code. Request a new one.")


class VerificationLocked(APIError):
    status = 429
    code = "verification_locked"
    message = _("Too many failed sign-in attempts for this email. Try again later.")


class AccountInactive(APIError):
    status = 403
    code = "account_inactive"
    message = _("This account is deactivated.")


class SignupClosed(APIError):
    status = 403
    code = "signup_closed"
    message = _("Sign-up is by invitation only.")


class LinkInvalid(APIError):
    status = 400
    code = "link_invalid"
    message = _(
        "This sign-in link is not valid. It may have been cut or changed, "
        "or a newer email replaced it."
    )


class LinkExpired(APIError):
    status = 410
    code = "link_expired"
    message = _("This sign-in link has expired. Request a new one.")


class LinkUsed(APIError):
    status = 410
    code = "link_used"
    message = _(
        "The link and the code in that email work once, and one of them was used. "
        "Ask for a new code to sign in again."
    )


class RefreshTokenReused(APIError):
    status = 401
    code = "refresh_token_reused"
    message = _(
        "This refresh token was already used. The session has been ended for safety; "
        "sign in again."
    )


class SessionEnded(APIError):
    status = 401
    code = "token_revoked"
    message = _("This session has ended. Sign in again.")


class SessionNotFound(APIError):
    status = 404
    code = "session_not_found"
    message = _("You have no live session with that id.")


class Forbidden(APIError):
    status = 403
    code = "forbidden"
    message = _("You do not have the role this action needs.")


class SignInDenied(APIError):
    status = 403
    code = "signin_denied"
    message = _("This sign-in was denied from the link in the email. Request a new code.")


class LinkBoundElsewhere(APIError):
    status = 403
    code = "link_bound_elsewhere"
    message = _(
        "This sign-in was asked for in another browser: approve it there, "
        "or open the link in that browser."
    )


class NotTheAskingBrowser(APIError):
    status = 403
    code = "not_the_asking_browser"
    message = _("No sign-in from this browser is waiting for approval.")


class ApprovalTokenInvalid(APIError):
    status = 403
    code = "approval_token_invalid"
    message = _("This approval page is out of date. Open the link from the email again.")


class PasskeyCeremonyExpired(APIError):
    status = 400
    code = "passkey_ceremony_expired"
    message = _("This passkey request expired or was already used. Start again.")


class PasskeyInvalid(APIError):
    status = 401
    code = "passkey_invalid"
    message = _("This passkey could not be verified.")


class PasskeyUnknown(APIError):
    status = 401
    code = "passkey_unknown"
    message = _("This passkey is not registered here. Sign in with a code from your email.")


class PasskeyAlreadyRegistered(APIError):
    status = 409
    code = "passkey_already_registered"
    message = _("This passkey is already registered.")


class PasskeyNotFound(APIError):
    status = 404
    code = "passkey_not_found"
    message = _("You have no passkey with that id.")


class FreshLoginRequired(APIError):
    status = 401
    code = "fresh_login_required"
    message = _("Confirm it is you first: use your passkey or a new code from your email.")


class SignupRefused(APIError):
    """Raised by a host's `before_user_created` callback, with its own message."""

    status = 403
    code = "signup_refused"
    message = _("This address cannot be used to create an account here.")


class EmailUnchanged(APIError):
    status = 422
    code = "email_unchanged"
    message = _("That is already your address.")


class EmailChangeNotPending(APIError):
    status = 400
    code = "email_change_not_pending"
    message = _("There is no address change waiting for a code. Ask for a new one.")


class EmailChangeCodeInvalid(APIError):
    status = 400
    code = "email_change_code_invalid"
    message = _("That code is not correct.")


class EmailChangeLocked(APIError):
    status = 429
    code = "email_change_locked"
    message = _("Too many wrong codes. Ask for a new code.")


class EmailTaken(APIError):
    """Shown only to someone who has proven control of the address."""

    status = 409
    code = "email_taken"
    message = _("Another account uses that address now.")


class EmailChangeLinkInvalid(APIError):
    status = 400
    code = "email_change_link_invalid"
    message = _("This link is not valid any more.")


class AccountNotFound(APIError):
    status = 404
    code = "account_not_found"
    message = _("This account no longer exists.")
