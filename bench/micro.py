"""The lean paths against the library paths they replace, one operation at a time.

`python -m bench.micro` starts a private Redis server (users in SQLite, or on
BENCH_DATABASE_URL's server) and times, in this process, each lean mechanism beside
what the same operation costs through the library's own path:

- token decode: `LeanDecoder` against flask-jwt-extended's `_decode_jwt_from_config`;
- token encode: `LeanEncoder` against flask-jwt-extended's `_encode_jwt_from_config`;
- a state script: `LeanRedis` (own connection) against redis-py's `Script.__call__`;
- the email task's message: the per-task template against `amqp.as_task_v2` per message,
  each with its LPUSH (lean, and redis-py's `lpush`);
- the profile read: a kept autocommit connection against a pool checkout per statement.

CPU µs per operation, median of interleaved rounds (the machine's drift cancels out).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

import flask_migrate
import redis
from flask_jwt_extended import JWTManager, create_access_token

from app import create_app
from app.devtools.redis_server import start_server
from config import ProductionConfig
from flask_email_signin import session_store
from flask_email_signin.redis_client import lua_script, redis_from_url
from flask_email_signin.task_publisher import RedisTaskPublisher
from flask_email_signin.tasks import REDACTED_KWARGS, SEND_LOGIN_CODE

from .stack import ROOT, Stack, free_port

ROUNDS = 7
TOUCH = lua_script(session_store.TOUCH_SESSION)


def timed(operation: Callable[[], Any], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        operation()
    return (time.process_time() - started) / count * 1e6


def compare(pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]],
            count: int) -> dict[str, tuple[float, float]]:
    """Median CPU µs of (library path, lean path) per operation, in interleaved rounds."""
    runs: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in pairs}
    for library, lean in pairs.values():
        library(), lean()  # warm-up: scripts loaded, connections open, caches filled
    for _ in range(ROUNDS):
        for name, (library, lean) in pairs.items():
            runs[name][0].append(timed(library, count))
            runs[name][1].append(timed(lean, count))
    return {name: (median(old), median(new)) for name, (old, new) in runs.items()}


def old_publish(publisher: RedisTaskPublisher, client: redis.Redis) -> None:
    """The message as built before templates: `as_task_v2` per message, redis-py's LPUSH."""
    task_id = str(uuid.uuid4())
    message = publisher.celery.amqp.as_task_v2(
        task_id, SEND_LOGIN_CODE, kwargs=KWARGS, expires=600, argsrepr="()",
        kwargsrepr=REDACTED_KWARGS, origin=publisher.origin, ignore_result=None,
    )
    envelope = {
        "body": base64.b64encode(json.dumps(message.body).encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {**message.headers, "request_id": "r"},
        "properties": {**message.properties, "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "micro"},
                       "priority": 0, "body_encoding": "base64",
                       "delivery_tag": str(uuid.uuid4())},
    }
    client.lpush("micro", json.dumps(envelope))


KWARGS = {"email": "someone@example.com", "code": "123456", "expires_at": 2_000_000_000,
          "link_secret": "s" * 43, "locale": "en"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="operations per round")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-micro-") as tmp:
        port = free_port()
        server = start_server(port, Path(tmp) / "redis")
        try:
            url = f"redis://127.0.0.1:{port}"
            stack = Stack(Path(tmp), gunicorn_workers=0, gunicorn_threads=0)
            settings = {
                "SECRET_KEY": "m" * 64, "JWT_SECRET_KEY": "j" * 64, "OTP_REDIS_URL": f"{url}/0",
                "OTP_CELERY_BROKER_URL": f"{url}/1", "MAIL_SERVER": "127.0.0.1",
                # Users in a private database on BENCH_DATABASE_URL's server, else SQLite.
                "SQLALCHEMY_DATABASE_URI": stack.database(
                    os.environ.get("BENCH_DATABASE_URL") or None
                ),
            }
            app = create_app(type("MicroConfig", (ProductionConfig,), settings))
            with app.app_context():
                flask_migrate.upgrade(directory=str(ROOT / "migrations"))
            results = _measure(app, url, args.count)
            app.extensions["email_signin"].audit.flush()
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()
        finally:
            server.kill()
            server.wait(timeout=10)
            stack.drop_database()
    print(f"{'operation':<34} {'library µs':>11} {'lean µs':>9} {'saved':>7}")
    for name, (old, new) in results.items():
        print(f"{name:<34} {old:>11.1f} {new:>9.1f} {old - new:>7.1f}")
    return 0


def _measure(app: Any, url: str, count: int) -> dict[str, tuple[float, float]]:
    manager: JWTManager = app.extensions["flask-jwt-extended"]
    users = app.extensions["email_signin"].users
    full = redis_from_url(f"{url}/0", lean=False, retry_seconds=5)
    lean = redis_from_url(f"{url}/0", retry_seconds=5)
    broker_plain = redis.Redis.from_url(f"{url}/1")
    with app.test_request_context("/"):
        token = create_access_token("42", additional_claims={"sid": "s" * 22})
        user = users.sign_in("micro@example.com", allow_signup=True)
        publisher = RedisTaskPublisher(app.extensions["celery"], redis_from_url(f"{url}/1"))
        engine = users.db.engine
        statement = users._statements.profile

        def pooled_profile() -> Any:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                return conn.execute(statement, {"user_id": user.id}).first()

        pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "token decode": (
                lambda: manager._decode_jwt_from_config.library_decode(token),  # type: ignore
                lambda: manager._decode_jwt_from_config(token),
            ),
            "token encode": (
                lambda: JWTManager._encode_jwt_from_config(manager, "42", "access"),
                lambda: manager._encode_jwt_from_config("42", "access"),
            ),
            "session check script": (
                lambda: TOUCH(keys=["sess:{u1}:x"], args=[60], client=full),
                lambda: TOUCH(keys=["sess:{u1}:x"], args=[60], client=lean),
            ),
            "email task message + LPUSH": (
                lambda: old_publish(publisher, broker_plain),
                lambda: publisher.publish(SEND_LOGIN_CODE, kwargs=KWARGS, expires=600,
                                          kwargsrepr=REDACTED_KWARGS,
                                          headers={"request_id": "r"}),
            ),
            "profile read (one SELECT)": (pooled_profile, lambda: users.profile(user.id)),
        }
        results = compare(pairs, count)
        broker_plain.delete("micro", "celery")
    for client in (full, lean, broker_plain):
        client.close()
    return results


if __name__ == "__main__":
    raise SystemExit(main())
