"""The Celery task that emails a sign-in code, and the one function that queues it.

The task is registered on the app's own Celery app by `init_app` (Flask's
`celery_init_app` pattern), so a host worker started from its own factory runs it
with no further line. It takes primitives only, ignores its result, and is
idempotent under redelivery (late acks): a code replaced, used, expired or
already mailed is not mailed again.
"""

from __future__ import annotations

import logging
import smtplib
import time
from typing import Any, NoReturn

import redis
from celery import Celery, Task
from celery.exceptions import Ignore
from flask import Flask, has_app_context
from kombu.exceptions import OperationalError as BrokerError

from . import audit, signals
from . import code_store as store
from .account_email import compose_and_send
from .codes import CODE_PURPOSE, email_tag, secret_digest
from .errors import ServiceUnavailable
from .login_email import send_login_code_email
from .logs import current_request_id, request_id_var
from .metrics import EMAILS
from .signals import emit
from .signup_policy import signup_allowed
from .state import current_state, user_store

log = logging.getLogger(__name__)
SEND_LOGIN_CODE = "flask_email_signin.send_login_code"
SEND_ACCOUNT_EMAIL = "flask_email_signin.send_account_email"
MAX_RETRY_DELAY_SECONDS = 60
REDACTED_KWARGS = (
    "{'email': '…', 'code': '…', 'expires_at': '…', 'link_secret': '…', 'locale': '…'}"
)


def queue_login_email(
    email: str, code: str, expires_at: int, link_secret: str, locale: str = ""
) -> None:
    """Queue the email task for this app's Celery app; raises kombu's OperationalError."""
    request_id = current_request_id()
    current_state().publisher.publish(
        SEND_LOGIN_CODE,
        kwargs={
            "email": email, "code": code, "expires_at": expires_at,
            "link_secret": link_secret, "locale": locale,
        },
        # The worker drops the task once the code is dead; monitoring never shows the secrets.
        expires=max(expires_at - time.time(), 1),
        kwargsrepr=REDACTED_KWARGS,
        # Followed from the view to the email in the logs (see logs.py).
        headers={"request_id": request_id} if request_id else None,
    )


def queue_account_email(
    kind: str, email: str, expires_at: int, locale: str = "", **fields: Any
) -> None:
    """Queue one of the account emails (see account_email); ServiceUnavailable if the broker
    is down. `fields` may hold a code or link: they are redacted from monitoring."""
    request_id = current_request_id()
    try:
        current_state().publisher.publish(
            SEND_ACCOUNT_EMAIL,
            kwargs={"kind": kind, "email": email, "expires_at": expires_at, "locale": locale,
                    "fields": fields},
            expires=max(expires_at - time.time(), 1),
            kwargsrepr=f"{{'kind': {kind!r}, 'email': '…', 'fields': '…'}}",
            headers={"request_id": request_id} if request_id else None,
        )
    except BrokerError:
        log.error("%s email not queued: broker unavailable", kind)
        raise ServiceUnavailable() from None


def send_account_email(
    task: Task, kind: str, email: str, expires_at: int, locale: str, fields: dict[str, Any]
) -> None:
    """Send an account email; retried like the sign-in email while it still matters.

    Not deduplicated under redelivery: a notice that arrives twice does no harm.
    """
    if time.time() >= expires_at:
        log.info("%s email dropped: no longer useful", kind)
        return
    try:
        compose_and_send(kind, email, locale, {**fields, "expires_at": expires_at})
    except Exception as error:
        if not is_transient(error):
            log.error("%s email refused by the mail server: %s", kind, type(error).__name__)
            EMAILS.labels("failed").inc()
            raise MailRefused(type(error).__name__) from None
        retry_while_the_code_lives(task, error, expires_at, "mail server")
    log.info("%s email sent", kind)
    EMAILS.labels("sent").inc()


class MailRefused(Exception):
    """A mail server's final refusal, named by its type only: its reply text can quote the
    recipient's address, and Celery would put it in the worker's log and in traces."""


def is_transient(error: Exception) -> bool:
    """Connection trouble and 4xx replies are worth retrying; 5xx replies are not."""
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    return isinstance(error, (smtplib.SMTPException, OSError))


def send_login_code(
    task: Task,
    email: str,
    code: str,
    expires_at: int,
    link_secret: str | None = None,
    locale: str = "",
) -> None:
    """Email a sign-in code and link, unless expired, replaced, used or sent already.

    In the account's stored language, else in the language of the request that asked.
    """
    tag = email_tag(email)
    task_id = task.request.id or ""
    if time.time() >= expires_at:
        log.info("login email dropped: code expired before delivery")
        return
    try:
        state = store.login_mail_state(tag, secret_digest(CODE_PURPOSE, email, code), task_id)
    except redis.RedisError as error:
        # The code may well still be live: try again, like a mail server outage.
        retry_while_the_code_lives(task, error, expires_at, "state store", email)
    if state == "stale":
        log.info("login email dropped: code replaced, used or expired")
        return
    if state == "sent":
        log.info("login email already sent; redelivered task ignored")
        return
    recipient = user_store().mail_recipient(email, allow_signup=signup_allowed(email))
    if not recipient.may_sign_in:
        log.info("login email not sent: no active account and sign-up is closed")
        return
    try:
        send_login_code_email(
            email, code, expires_at, link_secret, locale=recipient.locale or locale
        )
    except Exception as error:
        if not is_transient(error):
            log.error("login email refused by the mail server: %s", type(error).__name__)
            EMAILS.labels("failed").inc()
            audit.record(audit.CODE_SEND_FAILED, email=email, email_tag=tag,
                         detail={"reason": "refused", "error": type(error).__name__})
            raise MailRefused(type(error).__name__) from None
        retry_while_the_code_lives(task, error, expires_at, "mail server", email)
    try:
        store.mark_mail_sent(tag, task_id, int(expires_at - time.time()) + 60)
    except redis.RedisError as error:
        # Sent all the same: only a redelivery of this very task could send it twice.
        log.warning("login email sent, but not marked as sent: %s", type(error).__name__)
    log.info("login email sent")
    EMAILS.labels("sent").inc()
    audit.record(audit.CODE_SENT, email=email, email_tag=tag)
    emit(signals.code_sent, email=email)


def longest_retry_delay(task: Task) -> int:
    """MAX_RETRY_DELAY_SECONDS, kept under half the Redis broker's visibility timeout.

    A retry is a message the worker holds, unacknowledged, until its countdown ends; held
    longer than the visibility timeout, another worker's sweep hands it out again and two
    workers would run it at the same moment (both could send).
    """
    options = task.app.conf.broker_transport_options or {}
    visibility = options.get("visibility_timeout")
    if not visibility:
        return MAX_RETRY_DELAY_SECONDS
    return max(1, min(MAX_RETRY_DELAY_SECONDS, int(visibility) // 2))


def retry_while_the_code_lives(
    task: Task, error: Exception, expires_at: int, service: str, email: str | None = None
) -> NoReturn:
    """Retry with exponential backoff, or drop the email once its code would be dead."""
    delay = min(2 ** (task.request.retries + 1), longest_retry_delay(task))
    if time.time() + delay >= expires_at:
        log.warning("login email dropped: %s down until the code expired", service)
        EMAILS.labels("failed").inc()
        audit.record(audit.CODE_SEND_FAILED, email=email,
                     detail={"reason": "expired", "service": service})
        raise Ignore()
    log.warning("%s unavailable (%s); retry in %ss", service, type(error).__name__, delay)
    EMAILS.labels("retried").inc()
    # A retry is a new message and Celery does not carry kwargsrepr over to it:
    # redact its logged arguments again, or the worker would log the code.
    raise task.retry(countdown=delay, exc=error, kwargsrepr=REDACTED_KWARGS) from None


def register_tasks(celery: Celery, app: Flask) -> None:
    """Register the email task on `celery`, running inside `app` (unless the task already is)."""

    @celery.task(
        name=SEND_LOGIN_CODE,
        bind=True,
        ignore_result=True,
        acks_late=True,
        # Acked after the send, and handed out again if the worker dies meanwhile,
        # whatever the Celery app's own defaults are.
        reject_on_worker_lost=True,
        max_retries=None,
        # This app only: a shared task would be added to every Celery app of the process.
        shared=False,
    )
    def send_login_code_task(self: Task, **kwargs: Any) -> None:
        """Email a sign-in code (see send_login_code), its log lines tagged with the request id."""
        run_in_app(app, self, send_login_code, kwargs)

    @celery.task(
        name=SEND_ACCOUNT_EMAIL, bind=True, ignore_result=True, acks_late=True,
        reject_on_worker_lost=True, max_retries=None, shared=False,
    )
    def send_account_email_task(self: Task, **kwargs: Any) -> None:
        """Email an address-change code or notice (see send_account_email)."""
        run_in_app(app, self, send_account_email, kwargs)


def run_in_app(app: Flask, task: Task, function: Any, kwargs: dict[str, Any]) -> None:
    """Run a task's function inside `app`, its log lines tagged with the request id."""
    token = request_id_var.set(task.request.get("request_id") or task.request.id)
    try:
        if has_app_context():  # the host's FlaskTask already entered its app
            function(task, **kwargs)
        else:
            with app.app_context():
                function(task, **kwargs)
    finally:
        request_id_var.reset(token)
