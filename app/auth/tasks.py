"""Celery tasks of the sign-in flow."""

from __future__ import annotations

import logging
import smtplib
import time

from celery import Task, shared_task
from flask import current_app

from ..metrics import EMAILS
from . import store
from .codes import email_tag, secret_digest
from .email import send_login_code_email
from .services import CODE_PURPOSE, SEND_LOGIN_CODE_TASK, find_user

log = logging.getLogger(__name__)
MAX_RETRY_DELAY_SECONDS = 60


def is_transient(error: Exception) -> bool:
    """Connection trouble and 4xx replies are worth retrying; 5xx replies are not."""
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    return isinstance(error, (smtplib.SMTPException, OSError))


def may_receive_code(email: str) -> bool:
    """Invite-only deployments send codes only to existing, active accounts."""
    if current_app.config["OTP_ALLOW_SIGNUP"]:
        return True
    user = find_user(email)
    return user is not None and user.is_active


@shared_task(
    name=SEND_LOGIN_CODE_TASK, bind=True, ignore_result=True, acks_late=True, max_retries=None
)
def send_login_code(
    self: Task, email: str, code: str, expires_at: int, link_secret: str | None = None
) -> None:
    """Email a sign-in code and link, unless expired, replaced, used or sent already."""
    tag = email_tag(email)
    task_id = self.request.id or ""
    if time.time() >= expires_at:
        log.info("login email dropped: code expired before delivery")
        return
    state = store.login_mail_state(tag, secret_digest(CODE_PURPOSE, email, code), task_id)
    if state == "stale":
        log.info("login email dropped: code replaced, used or expired")
        return
    if state == "sent":
        log.info("login email already sent; redelivered task ignored")
        return
    if not may_receive_code(email):
        log.info("login email not sent: no active account and sign-up is closed")
        return
    try:
        send_login_code_email(email, code, expires_at, link_secret)
    except Exception as error:
        if not is_transient(error):
            log.error("login email refused by the mail server: %s", type(error).__name__)
            EMAILS.labels("failed").inc()
            raise
        delay = min(2 ** (self.request.retries + 1), MAX_RETRY_DELAY_SECONDS)
        if time.time() + delay >= expires_at:
            log.warning("login email dropped: mail server down until the code expired")
            EMAILS.labels("failed").inc()
            return
        log.warning("mail server unavailable (%s); retry in %ss", type(error).__name__, delay)
        EMAILS.labels("retried").inc()
        # A retry is a new message and Celery does not carry kwargsrepr over to it:
        # redact its logged arguments again, or the worker would log the code.
        redacted = repr(dict.fromkeys(self.request.kwargs or {}, "…"))
        raise self.retry(countdown=delay, exc=error, kwargsrepr=redacted) from None
    store.mark_mail_sent(tag, task_id, int(expires_at - time.time()) + 60)
    log.info("login email sent")
    EMAILS.labels("sent").inc()
