"""The worker's side of webhooks: sign, post, retry on the schedule, dead-letter at the end.

Each attempt is signed anew (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
`webhook-signature`) with the time of that attempt, since receivers refuse a
timestamp more than five minutes old; the id stays the message's. A 2xx answer
delivers; any other answer, a redirect (never followed: it would turn the POST
into a GET), a timeout or a connection error is retried after the next delay of
OTP_WEBHOOK_RETRY_DELAYS. After the last one the webhook is dead: counted and
kept in Redis (webhook_store), for `flask audit webhooks`. The secret and the
payload are never logged.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery, Task
from flask import Flask, current_app
from standardwebhooks import Webhook

from . import webhook_store
from .metrics import WEBHOOK_DELIVERIES
from .settings import settings
from .tasks import run_in_app
from .webhooks import DELIVER_WEBHOOK, redacted_kwargs, webhook_endpoints

log = logging.getLogger(__name__)
USER_AGENT = "flask-email-signin-webhooks"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is an answer: a failed attempt, not a hop to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: str, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """POST `body`; returns (HTTP status or None, what went wrong or "")."""
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked at init_app
        url, data=body.encode(), headers=headers, method="POST"
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as error:  # a non-2xx answer (3xx, 4xx, 5xx)
        error.close()
        return int(error.code), f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:  # timeouts, refusals, DNS, TLS
        reason = getattr(error, "reason", error)
        return None, type(reason).__name__ if isinstance(reason, BaseException) else str(reason)


def signed_headers(secret: str, msg_id: str, body: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def deliver_webhook(task: Task, url: str, msg_id: str, event: str, payload: str) -> None:
    """One attempt to deliver a webhook; retried on failure, dead-lettered after the last."""
    endpoint = next((e for e in webhook_endpoints(current_app.config) if e.url == url), None)
    if endpoint is None:
        log.warning("webhook %s dropped: %s is no longer in OTP_WEBHOOKS", msg_id, url)
        WEBHOOK_DELIVERIES.labels("dropped").inc()
        return
    headers = signed_headers(endpoint.secret, msg_id, payload)
    status, error = post(url, payload, headers, settings.webhook_timeout)
    if status is not None and 200 <= status < 300:
        log.info("webhook %s (%s) delivered to %s", msg_id, event, url)
        WEBHOOK_DELIVERIES.labels("delivered").inc()
        return
    attempt, delays = task.request.retries, settings.webhook_retry_delays
    if attempt < len(delays):
        log.warning("webhook %s (%s) to %s failed (%s); retry in %ss",
                    msg_id, event, url, error, delays[attempt])
        WEBHOOK_DELIVERIES.labels("retried").inc()
        # A retry is a new message: its logged arguments are redacted again.
        raise task.retry(countdown=delays[attempt],
                         kwargsrepr=redacted_kwargs(url, msg_id, event)) from None
    dead_letter(msg_id, url, event, attempts=attempt + 1, status=status, error=error)


def dead_letter(msg_id: str, url: str, event: str, *, attempts: int, status: int | None,
                error: str) -> None:
    """Count the webhook and keep its record; it is not tried again."""
    log.error("webhook %s (%s) to %s dead after %d attempt(s): %s",
              msg_id, event, url, attempts, error)
    WEBHOOK_DELIVERIES.labels("dead").inc()
    record = {"id": msg_id, "url": url, "type": event, "attempts": attempts,
              "status": status, "error": error, "at": datetime.now(UTC).isoformat()}
    try:
        webhook_store.add_dead_letter(record)
    except redis.RedisError as failure:
        log.error("dead webhook %s not recorded: %s", msg_id, type(failure).__name__)


def register_webhook_task(celery: Celery, app: Flask) -> None:
    """Register the delivery task on `celery`, running inside `app`.

    Registered even with no endpoint configured, so webhooks still queued when
    the last endpoint is removed are dropped with a log line, not refused.
    """

    @celery.task(
        name=DELIVER_WEBHOOK, bind=True, ignore_result=True, acks_late=True,
        reject_on_worker_lost=True, max_retries=None, shared=False,
    )
    def deliver_webhook_task(self: Task, **kwargs: Any) -> None:
        """Post one signed webhook (see deliver_webhook)."""
        run_in_app(app, self, deliver_webhook, kwargs)
