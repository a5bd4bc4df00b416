"""Outgoing webhooks: the configured endpoints, and the audit listener that queues them.

Every audit event (audit.EVENTS, the webhook types) an endpoint subscribes to
becomes one `deliver_webhook` task per endpoint, queued by the audit log's
flusher thread after each batch: nothing of it runs on a request. The worker
signs and posts it (webhook_delivery). Delivery is at least once: a receiver
deduplicates by `webhook-id`, which every retry of a message keeps.

The payload holds the event's type, time, account, address, client IP, request
id and detail: never a code, link secret or token (no audit event holds one).
The endpoint's secret never travels in the task: the worker finds it by URL in
its own OTP_WEBHOOKS.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from kombu.exceptions import OperationalError as BrokerError
from standardwebhooks import Webhook

from .audit import EVENTS, Recorded
from .settings import seconds_list, settings
from .state import current_state

log = logging.getLogger(__name__)

DELIVER_WEBHOOK = "flask_email_signin.deliver_webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret
# The Standard Webhooks specification asks for secrets of 24 to 64 random bytes.
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
ENDPOINT_KEYS = {"url", "secret", "events"}
# A queued webhook still undelivered this long after its last planned retry is dropped.
EXPIRY_MARGIN_SECONDS = 24 * 3600


class WebhookSettingError(ValueError):
    """Raised by init_app; the message names the endpoint and what to fix."""


@dataclass(frozen=True)
class Endpoint:
    """One receiver: where to post, the key to sign with, and what it subscribes to."""

    url: str
    secret: str
    events: frozenset[str] | None  # None: every event; "family.*" entries name a family

    def wants(self, event: str) -> bool:
        if self.events is None:
            return True
        return event in self.events or f"{event.split('.', 1)[0]}.*" in self.events


def webhook_endpoints(config: Mapping[str, Any]) -> list[Endpoint]:
    """OTP_WEBHOOKS, checked; raises WebhookSettingError saying what is wrong."""
    value = config.get("OTP_WEBHOOKS") or ()
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError as error:
            raise WebhookSettingError(f"OTP_WEBHOOKS is not valid JSON: {error}") from None
    if not isinstance(value, (list, tuple)):
        raise WebhookSettingError("OTP_WEBHOOKS must be a list of endpoints (or its JSON text).")
    endpoints = [_endpoint(number, item) for number, item in enumerate(value, start=1)]
    urls = [endpoint.url for endpoint in endpoints]
    for url in urls:
        if urls.count(url) > 1:
            # The worker finds an endpoint's secret by its URL.
            raise WebhookSettingError(f"OTP_WEBHOOKS: {url!r} is listed twice; list it once.")
    return endpoints


def _endpoint(number: int, item: Any) -> Endpoint:
    where = f"OTP_WEBHOOKS endpoint {number}"
    if not isinstance(item, Mapping):
        raise WebhookSettingError(f"{where} must be a mapping with url, secret and events.")
    if unknown := set(item) - ENDPOINT_KEYS:
        raise WebhookSettingError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            "the keys are url, secret and events."
        )
    url = item.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookSettingError(f"{where}: url must be an http:// or https:// URL, not {url!r}.")
    if parts.username is not None or parts.password is not None:
        # URLs appear in task messages, logs and dead letters; the signature authenticates.
        raise WebhookSettingError(f"{where}: url must not hold credentials (user:password@).")
    return Endpoint(str(url), _secret(where, item.get("secret")), _events(where, item))


def _secret(where: str, secret: Any) -> str:
    """A `whsec_` secret as Standard Webhooks defines it: base64 of 24 to 64 bytes."""
    form = (f"{where}: secret must be 'whsec_' followed by the base64 of "
            f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes")
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise WebhookSettingError(f"{form}.")
    encoded = secret[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSettingError(f"{form}; it is not base64.") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise WebhookSettingError(f"{form}; it holds {len(key)} bytes.")
    Webhook(secret)  # the library reads it the same way
    return secret


def _events(where: str, item: Mapping[str, Any]) -> frozenset[str] | None:
    if "events" not in item or item["events"] is None:
        return None
    events = item["events"]
    if isinstance(events, str) or not isinstance(events, (list, tuple)) or not events:
        raise WebhookSettingError(
            f"{where}: events must be a non-empty list of event names (leave it out for all)."
        )
    for event in events:
        family = (isinstance(event, str) and event.endswith(".*")
                  and any(e.startswith(event[:-1]) for e in EVENTS))
        if event not in EVENTS and not family:
            raise WebhookSettingError(
                f"{where}: unknown event {event!r}; use one of {', '.join(EVENTS)}, "
                "or a family such as 'session.*'."
            )
    return frozenset(events)


def check_webhook_settings(config: Mapping[str, Any]) -> list[Endpoint]:
    """Every webhook setting checked at init_app; returns the endpoints."""
    endpoints = webhook_endpoints(config)
    try:
        delays = seconds_list(config["OTP_WEBHOOK_RETRY_DELAYS"])
        timeout = float(config["OTP_WEBHOOK_TIMEOUT_SECONDS"])
    except (TypeError, ValueError):
        raise WebhookSettingError(
            "OTP_WEBHOOK_RETRY_DELAYS must be a list of seconds and "
            "OTP_WEBHOOK_TIMEOUT_SECONDS a number of seconds."
        ) from None
    if any(delay < 0 for delay in delays) or timeout <= 0:
        raise WebhookSettingError(
            "OTP_WEBHOOK_RETRY_DELAYS must not be negative, and OTP_WEBHOOK_TIMEOUT_SECONDS "
            "must be above 0."
        )
    return endpoints


def payload_of(recorded: Recorded) -> dict[str, Any]:
    """The JSON body of one event's webhook: {"type", "timestamp", "data"}."""
    row = recorded.row
    return {
        "type": row["event"],
        "timestamp": row["at"].isoformat().replace("+00:00", "Z"),
        "data": {
            "user_id": row["user_id"],
            "email": recorded.email,
            "ip": row["ip"] or None,
            "request_id": row["request_id"] or None,
            "detail": row["detail"],
        },
    }


def new_message_id() -> str:
    """`msg_` and a random UUID: kept by every retry, so receivers can deduplicate."""
    return f"msg_{uuid.uuid4().hex}"


def queue_webhooks(batch: list[Recorded]) -> None:
    """The audit listener: one delivery task per (subscribed endpoint, event) of the batch."""
    endpoints = webhook_endpoints(current_app.config)
    publisher = current_state().publisher
    expires = sum(settings.webhook_retry_delays) + EXPIRY_MARGIN_SECONDS
    not_queued = 0
    for recorded in batch:
        event = recorded.row["event"]
        wanting = [endpoint for endpoint in endpoints if endpoint.wants(event)]
        if not wanting:
            continue
        body = json.dumps(payload_of(recorded), separators=(",", ":"), sort_keys=True)
        request_id = recorded.row["request_id"]
        for endpoint in wanting:
            msg_id = new_message_id()
            try:
                publisher.publish(
                    DELIVER_WEBHOOK,
                    kwargs={"url": endpoint.url, "msg_id": msg_id, "event": event,
                            "payload": body},
                    expires=expires,
                    # The payload holds an address and an IP: kept out of monitoring and logs.
                    kwargsrepr=redacted_kwargs(endpoint.url, msg_id, event),
                    headers={"request_id": request_id} if request_id else None,
                )
            except BrokerError:
                not_queued += 1
    if not_queued:
        log.error("%d webhook(s) not queued: broker unavailable", not_queued)


def redacted_kwargs(url: str, msg_id: str, event: str) -> str:
    """The task's arguments as monitoring and the worker's log show them: no payload."""
    return f"{{'url': {url!r}, 'msg_id': {msg_id!r}, 'event': {event!r}, 'payload': '…'}}"
