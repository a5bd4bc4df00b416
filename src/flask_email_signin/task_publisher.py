"""Publishing the email task: one LPUSH of the message Celery would send, on a Redis broker.

`Celery.send_task` costs several hundred microseconds of CPU per message
(routing, producer pool, kombu's serialisation layers, signals) on every
request-otp. On a plain Redis broker the message it sends is a JSON envelope
LPUSHed onto the queue's list; this publisher builds the same protocol-2
message with Celery's own `amqp.as_task_v2` (once per task: later messages
copy it), wraps it as kombu's Redis transport does, and pushes it on each
thread's own kept connection (see redis_client.LeanRedis): the same message,
any `celery worker` consumes it, at a fraction of the cost.

Any other broker (RabbitMQ...), custom task routes, a key prefix or a TLS
broker keep Celery's own `send_task`. Neither path sends Celery's
`before/after_task_publish` signals (this path cannot; the other does):
the request id rides in a message header instead. For the same reason the
Celery instrumentation cannot see this path's publish: with OTP_TRACING on, it
adds its own span and puts the trace context in the message headers (see tracing).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.exceptions import OperationalError as BrokerError

from .redis_client import LeanRedis
from .tracing import publish_span


def redis_publisher_unsupported(celery: Celery) -> str | None:
    """Why the Redis fast path cannot serve `celery` (None: it can)."""
    conf = celery.conf
    url = str(conf.broker_url or "")
    if not url.startswith("redis://"):
        return "the broker is not a plain redis:// server"
    if conf.task_routes or conf.task_queues:
        return "custom task routes or queues"
    if (conf.broker_transport_options or {}).get("global_keyprefix"):
        return "a broker key prefix"
    if conf.task_serializer != "json":
        return "a task serializer other than json"
    return None


@dataclass(frozen=True)
class MessageTemplate:
    """What every message of one task (and kwargs repr) shares, built once by Celery."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    embed: dict[str, Any]  # the body's third part: callbacks, errbacks, chain, chord


class RedisTaskPublisher:
    """Pushes protocol-2 task messages straight onto a Redis broker's queue list.

    Celery's `amqp.as_task_v2` builds each task's first message; later ones copy it
    and change what differs per message (ids, expiry time, arguments, headers).
    """

    def __init__(self, celery: Celery, client: LeanRedis, *, tracing: bool = False) -> None:
        self.celery, self.client, self.tracing = celery, client, tracing
        self.origin = anon_nodename()
        self.queue = str(celery.conf.task_default_queue)
        self._templates: dict[tuple[str, str], MessageTemplate] = {}

    def template(self, name: str, kwargsrepr: str) -> MessageTemplate:
        template = self._templates.get((name, kwargsrepr))
        if template is None:
            message = self.celery.amqp.as_task_v2(
                "", name, kwargs={}, argsrepr="()", kwargsrepr=kwargsrepr, origin=self.origin,
                ignore_result=None,  # as send_task: the task's own setting decides
            )
            template = MessageTemplate(
                headers=dict(message.headers), properties=dict(message.properties),
                embed=dict(message.body[2]),
            )
            self._templates[(name, kwargsrepr)] = template
        return template

    def publish(
        self,
        name: str,
        *,
        kwargs: dict[str, Any],
        expires: float,
        kwargsrepr: str,
        headers: dict[str, Any] | None = None,
    ) -> None:
        template = self.template(name, kwargsrepr)
        task_id = str(uuid.uuid4())
        # The instant Celery would write, in its own ISO 8601 form.
        expiry = datetime.fromtimestamp(time.time() + expires, tz=self.celery.timezone)
        message_headers = {
            **template.headers, "id": task_id, "root_id": task_id,
            "expires": expiry.isoformat(), **(headers or {}),
        }
        body = ((), kwargs, template.embed)
        if self.tracing:
            with publish_span(name, task_id, self.queue, message_headers):
                self._push(task_id, body, template, message_headers)
        else:
            self._push(task_id, body, template, message_headers)

    def _push(self, task_id: str, body: Any, template: MessageTemplate,
              headers: dict[str, Any]) -> None:
        queue = self.queue
        envelope = {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **template.properties,
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        payload = json.dumps(envelope)
        try:
            self.client.lean_call(("LPUSH", queue, payload),
                                  lambda: self.client.lpush(queue, payload))
        except redis.RedisError as error:
            # The same error as Celery's own publisher, so callers handle one kind.
            raise BrokerError(str(error)) from error


class CeleryTaskPublisher:
    """Celery's own `send_task`, for every broker the fast path does not serve."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def publish(
        self,
        name: str,
        *,
        kwargs: dict[str, Any],
        expires: float,
        kwargsrepr: str,
        headers: dict[str, Any] | None = None,
    ) -> None:
        self.celery.send_task(
            name, kwargs=kwargs, expires=expires, kwargsrepr=kwargsrepr,
            retry=False, headers=headers,
        )


class TaskPublisher:
    """Chooses its way on the first publish, once the host has finished configuring Celery."""

    def __init__(self, celery: Celery, *, timeout: float, tracing: bool = False) -> None:
        self.celery, self.timeout, self.tracing = celery, timeout, tracing
        self._chosen: RedisTaskPublisher | CeleryTaskPublisher | None = None
        self._lock = threading.Lock()

    def _choose(self) -> RedisTaskPublisher | CeleryTaskPublisher:
        with self._lock:
            if self._chosen is None:
                if redis_publisher_unsupported(self.celery) is not None:
                    self._chosen = CeleryTaskPublisher(self.celery)
                else:
                    pool = redis.ConnectionPool.from_url(
                        str(self.celery.conf.broker_url),
                        socket_timeout=self.timeout,
                        socket_connect_timeout=self.timeout,
                        health_check_interval=30,
                    )
                    # Traced, the LPUSH goes through the instrumented client path.
                    client = LeanRedis(connection_pool=pool, lean=not self.tracing)
                    self._chosen = RedisTaskPublisher(self.celery, client, tracing=self.tracing)
            return self._chosen

    def publish(
        self,
        name: str,
        *,
        kwargs: dict[str, Any],
        expires: float,
        kwargsrepr: str,
        headers: dict[str, Any] | None = None,
    ) -> None:
        (self._chosen or self._choose()).publish(
            name, kwargs=kwargs, expires=expires, kwargsrepr=kwargsrepr, headers=headers
        )
