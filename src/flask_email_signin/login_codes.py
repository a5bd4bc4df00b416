"""Sign-in by emailed code: issue a code and queue its email; check a guess."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import request
from kombu.exceptions import OperationalError as BrokerError

from . import audit
from . import code_store as store
from .browser_binding import binding_for_this_browser
from .codes import (
    APPROVAL_PURPOSE,
    CODE_PURPOSE,
    LINK_PURPOSE,
    binding_digest,
    email_tag,
    generate_approval_number,
    generate_code,
    generate_link_secret,
    seal_email,
    secret_digest,
)
from .errors import (
    CodeExhausted,
    CodeExpired,
    CodeInvalid,
    CodeSuperseded,
    CodeUsed,
    HourlyLimitReached,
    ResendCooldown,
    ServiceUnavailable,
    VerificationLocked,
)
from .i18n import ngettext
from .metrics import CODES_REQUESTED, VERIFICATIONS
from .rate_limits import NO_WINDOWS, Windows
from .settings import settings
from .tasks import queue_login_email

log = logging.getLogger(__name__)


MAX_USER_AGENT_LENGTH = 256


@dataclass(frozen=True)
class CodeSent:
    expires_in: int
    resend_in: int
    # With a browser binding: the cookie value to set, and the number the page shows.
    binding: str | None = None
    approval_number: str | None = None


def request_login_code(
    email: str, windows: Windows = NO_WINDOWS, *, bind_browser: bool = False, locale: str = ""
) -> CodeSent:
    """Issue a new code for `email` (replacing any older one) and queue its email.

    The view does the same work whether or not the email has an account; the
    worker decides whether to send (see tasks.send_login_code), so neither the
    answer nor its timing tells who is registered. `bind_browser`: the link
    signs in this browser only (see browser_binding); `locale`: the email's.
    """
    ttl, cooldown = settings.code_ttl, settings.resend_cooldown
    if settings.dev_magic_code:
        return CodeSent(expires_in=ttl, resend_in=0)

    code, link_secret = generate_code(settings.code_length), generate_link_secret()
    tag, digest = email_tag(email), secret_digest(CODE_PURPOSE, email, code)
    binding = number = None
    asker = None
    if bind_browser:
        binding, number = binding_for_this_browser(), generate_approval_number()
        asker = store.Asker(
            binding=binding_digest(tag, binding),
            number=secret_digest(APPROVAL_PURPOSE, email, number),
            user_agent=request.user_agent.string[:MAX_USER_AGENT_LENGTH],
            ip=request.remote_addr or "",
        )
    outcome = store.issue_code(
        tag,
        digest,
        ttl=ttl,
        cooldown=cooldown,
        hourly_limit=settings.hourly_send_limit,
        link_digest=secret_digest(LINK_PURPOSE, email, link_secret),
        sealed_email=seal_email(email, tag, link_secret),
        asker=asker,
        windows=windows,
    )
    # Before queueing: the worker may send (and record) the email before this view returns.
    audit.record(audit.CODE_REQUESTED, email=email, email_tag=tag,
                 detail={"outcome": "issued" if outcome.status == "ok" else outcome.status})
    if outcome.status == "rate_limited":
        CODES_REQUESTED.labels("rate_limited").inc()
        raise windows.refusal(outcome.window, outcome.value)
    if outcome.status == "cooldown":
        CODES_REQUESTED.labels("cooldown").inc()
        raise ResendCooldown(headers={"Retry-After": str(outcome.value)})
    if outcome.status == "hourly_limit":
        CODES_REQUESTED.labels("hourly_limit").inc()
        raise HourlyLimitReached(headers={"Retry-After": str(outcome.value)})

    expires_at = outcome.value
    try:
        queue_login_email(email, code, expires_at, link_secret, locale)
    except BrokerError:
        store.withdraw_code(tag, digest)
        log.error("login email not queued: broker unavailable")
        CODES_REQUESTED.labels("unavailable").inc()
        audit.record(audit.CODE_SEND_FAILED, email=email, email_tag=tag,
                     detail={"reason": "broker_unavailable"})
        raise ServiceUnavailable() from None
    CODES_REQUESTED.labels("issued").inc()
    return CodeSent(
        expires_in=ttl, resend_in=cooldown, binding=binding, approval_number=number
    )


def verify_login_code(email: str, otp: str, windows: Windows = NO_WINDOWS) -> None:
    """Check a guess atomically: return if it is the live code, raise the reason if not.

    `windows`: the client's per-IP windows, counted by the same script first.
    """
    magic = settings.dev_magic_code
    if magic and otp == magic:
        VERIFICATIONS.labels("ok").inc()
        return
    tag = email_tag(email)
    outcome = store.consume_code(
        tag,
        secret_digest(CODE_PURPOSE, email, otp),
        max_attempts=settings.max_attempts,
        max_failures=settings.max_failures,
        lockout=settings.lockout_seconds,
        windows=windows,
    )
    if outcome.status == "rate_limited":
        VERIFICATIONS.labels("rate_limited").inc()
        raise windows.refusal(outcome.window, outcome.value)
    audit_outcome(outcome.status, email, tag)
    raise_for_outcome(outcome)


def audit_outcome(status: str, email: str, tag: str) -> None:
    if status == "ok":
        audit.record(audit.CODE_VERIFIED, email=email, email_tag=tag)
    elif status == "locked":
        audit.record(audit.CODE_LOCKED, email=email, email_tag=tag)
    elif status != "rate_limited":
        audit.record(audit.CODE_WRONG, email=email, email_tag=tag, detail={"reason": status})


def raise_for_outcome(outcome: store.Outcome) -> None:
    VERIFICATIONS.labels(outcome.status).inc()
    if outcome.status == "ok":
        return
    if outcome.status == "wrong":
        raise CodeInvalid(
            ngettext(
                "That code is not correct. %(num)s try left.",
                "That code is not correct. %(num)s tries left.",
                outcome.value,
            ),
            details={"attempts_left": outcome.value},
        )
    if outcome.status == "superseded":
        raise CodeSuperseded(details={"attempts_left": outcome.value})
    if outcome.status == "used":
        raise CodeUsed()
    if outcome.status == "exhausted":
        raise CodeExhausted()
    if outcome.status == "locked":
        raise VerificationLocked(headers={"Retry-After": str(outcome.value)})
    raise CodeExpired()
