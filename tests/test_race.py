"""50 concurrent verifies of one valid code: exactly one wins, from threads and processes."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from collections import Counter
from typing import Any

import redis
from flask import Flask

from flask_email_signin import code_store as store
from flask_email_signin.codes import CODE_PURPOSE, email_tag, secret_digest
from support import AuthActions

RACERS = 50


def test_fifty_threads_verifying_one_code_sign_in_exactly_once(
    auth: AuthActions, email: str
) -> None:
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    start = threading.Barrier(RACERS)
    answers: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def race() -> None:
        client = auth.app.test_client()
        start.wait(timeout=30)
        response = client.post("/auth/verify-otp", json={"email": email, "otp": code})
        body = response.get_json()
        with lock:
            answers.append((response.status_code, body.get("error", {}).get("code")))

    threads = [threading.Thread(target=race) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert Counter(answers) == {(200, None): 1, (401, "otp_used"): RACERS - 1}


def consume_in_child(
    app: Flask, tag: str, digest: bytes, start: Any, results: Any
) -> None:
    """Runs in a forked process: its own Redis connection, the product's own script."""
    # A fresh client: never reuse a connection (or a lock) inherited from the parent.
    app.extensions["email_signin"] = dataclasses.replace(
        app.extensions["email_signin"], redis=redis.Redis.from_url(app.config["OTP_REDIS_URL"])
    )
    config = app.config
    with app.app_context():
        start.wait(timeout=30)
        outcome = store.consume_code(
            tag,
            digest,
            max_attempts=config["OTP_MAX_ATTEMPTS"],
            max_failures=config["OTP_MAX_FAILURES"],
            lockout=config["OTP_LOCKOUT_SECONDS"],
        )
    results.put(outcome.status)


def test_fifty_processes_consuming_one_code_succeed_exactly_once(
    auth: AuthActions, email: str
) -> None:
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    with auth.app.app_context():
        tag, digest = email_tag(email), secret_digest(CODE_PURPOSE, email, code)

    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(RACERS), context.Queue()
    processes = [
        context.Process(target=consume_in_child, args=(auth.app, tag, digest, start, results))
        for _ in range(RACERS)
    ]
    for process in processes:
        process.start()
    outcomes = Counter(results.get(timeout=60) for _ in range(RACERS))
    for process in processes:
        process.join(timeout=30)
    assert all(process.exitcode == 0 for process in processes)
    assert outcomes == {"ok": 1, "used": RACERS - 1}
    # And the code is spent for the HTTP path too.
    assert auth.verify(email, code).get_json()["error"]["code"] == "otp_used"
