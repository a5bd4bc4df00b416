"""The sign-in logic: issue a code, queue its email, verify a guess, find the user."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import IntegrityError

from ..errors import ServiceUnavailable
from ..extensions import db
from ..metrics import CODES_REQUESTED, count_verification
from ..models import User, utcnow
from . import store
from .codes import (
    email_tag,
    generate_code,
    generate_link_secret,
    seal_email,
    secret_digest,
    unseal_email,
)
from .errors import (
    AccountInactive,
    CodeExhausted,
    CodeExpired,
    CodeInvalid,
    HourlyLimitReached,
    LinkExpired,
    LinkInvalid,
    LinkUsed,
    ResendCooldown,
    SignupClosed,
    VerificationLocked,
)

log = logging.getLogger(__name__)
CODE_PURPOSE = "login-code"
LINK_PURPOSE = "login-link"


@dataclass(frozen=True)
class CodeSent:
    expires_in: int
    resend_in: int


def request_login_code(email: str) -> CodeSent:
    """Issue a new code for `email` (replacing any older one) and queue its email.

    The view does the same work whether or not the email has an account; the
    worker decides whether to send (see tasks.send_login_code), so neither the
    answer nor its timing tells who is registered.
    """
    config = current_app.config
    ttl, cooldown = config["OTP_TTL_SECONDS"], config["OTP_RESEND_COOLDOWN_SECONDS"]
    if config.get("OTP_DEV_MAGIC_CODE"):
        return CodeSent(expires_in=ttl, resend_in=0)

    code, link_secret = generate_code(config["OTP_LENGTH"]), generate_link_secret()
    tag, digest = email_tag(email), secret_digest(CODE_PURPOSE, email, code)
    outcome = store.issue_code(
        tag,
        digest,
        ttl=ttl,
        cooldown=cooldown,
        hourly_limit=config["OTP_HOURLY_SEND_LIMIT"],
        link_digest=secret_digest(LINK_PURPOSE, email, link_secret),
        sealed_email=seal_email(email, tag, link_secret),
    )
    if outcome.status == "cooldown":
        CODES_REQUESTED.labels("cooldown").inc()
        raise ResendCooldown(headers={"Retry-After": str(outcome.value)})
    if outcome.status == "hourly_limit":
        CODES_REQUESTED.labels("hourly_limit").inc()
        raise HourlyLimitReached(headers={"Retry-After": str(outcome.value)})

    expires_at = outcome.value
    try:
        queue_login_email(email, code, expires_at, link_secret)
    except BrokerError:
        store.withdraw_code(tag, digest)
        log.error("login email not queued: broker unavailable")
        CODES_REQUESTED.labels("unavailable").inc()
        raise ServiceUnavailable() from None
    CODES_REQUESTED.labels("issued").inc()
    return CodeSent(expires_in=ttl, resend_in=cooldown)


SEND_LOGIN_CODE_TASK = "auth.send_login_code"


def queue_login_email(email: str, code: str, expires_at: int, link_secret: str) -> None:
    """Publish through this app's own Celery instance (one process may host several)."""
    current_app.extensions["celery"].send_task(
        SEND_LOGIN_CODE_TASK,
        kwargs={
            "email": email, "code": code, "expires_at": expires_at, "link_secret": link_secret
        },
        # The broker drops the task once the code is dead; monitoring never shows the secrets.
        expires=max(expires_at - time.time(), 1),
        kwargsrepr="{'email': '…', 'code': '…', 'link_secret': '…'}",
        retry=False,
    )


def verify_login_code(email: str, otp: str) -> User:
    """Check a guess atomically, then find or create the user it signs in."""
    config = current_app.config
    magic = config.get("OTP_DEV_MAGIC_CODE")
    if not (magic and otp == magic):
        outcome = store.consume_code(
            email_tag(email),
            secret_digest(CODE_PURPOSE, email, otp),
            max_attempts=config["OTP_MAX_ATTEMPTS"],
            max_failures=config["OTP_MAX_FAILURES"],
            lockout=config["OTP_LOCKOUT_SECONDS"],
        )
        raise_for_outcome(outcome)
    else:
        count_verification("ok")
    return sign_in_user(email)


def verify_login_link(tag: str, secret: str) -> User:
    """Use a sign-in link (its code dies with it), then find or create its user.

    The URL names the email only by its tag; the email comes back by unsealing
    it with the link's secret, and the store then compares the keyed digest.
    A wrong secret changes nothing in the store (see store.CONSUME_LINK).
    """
    sealed = store.sealed_email(tag)
    if sealed is None:  # no link issued, withdrawn, or long expired
        raise LinkExpired()
    email = unseal_email(sealed, tag, secret)
    if email is None:
        raise LinkInvalid()
    outcome = store.consume_link(tag, secret_digest(LINK_PURPOSE, email, secret))
    if outcome.status == "invalid":
        raise LinkInvalid()
    if outcome.status == "used":
        raise LinkUsed()
    if outcome.status != "ok":
        raise LinkExpired()
    return sign_in_user(email)


def raise_for_outcome(outcome: store.Outcome) -> None:
    count_verification(outcome.status)
    if outcome.status == "ok":
        return
    if outcome.status == "wrong":
        raise CodeInvalid(details={"attempts_left": outcome.value})
    if outcome.status == "exhausted":
        raise CodeExhausted()
    if outcome.status == "locked":
        raise VerificationLocked(headers={"Retry-After": str(outcome.value)})
    raise CodeExpired()


def find_user(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == email))


def sign_in_user(email: str) -> User:
    """The first successful sign-in creates the account; later ones stamp the time.

    One statement either way (INSERT, or UPDATE after the lookup): the new row is
    written with its sign-in time already set.
    """
    now = utcnow()
    user = find_user(email)
    if user is None:
        if not current_app.config["OTP_ALLOW_SIGNUP"]:
            raise SignupClosed()
        user = User(email=email, created_at=now, last_login_at=now)
        db.session.add(user)
        try:
            db.session.commit()
            return user
        except IntegrityError:  # created concurrently by another sign-in
            db.session.rollback()
            user = find_user(email)
            assert user is not None
    if not user.is_active:
        db.session.rollback()
        raise AccountInactive()
    user.last_login_at = now
    db.session.commit()
    return user
