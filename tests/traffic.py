"""Steady traffic for fault tests: sign-ins and protected reads, every outcome recorded.

A fault test runs these in threads while it breaks something, then checks that nothing
failed and reports how long the slowest request waited.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from flask import Flask
from live_stack import client_from

from app.devtools.inbox import Inbox, plain_text
from support import new_email


@dataclass
class SignInLoad:
    """Sign-ins one after another, each from its own address, recording every outcome."""

    app: Flask
    inbox: Inbox
    accepted: list[tuple[str, str, float]] = field(default_factory=list)
    refusals: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    # (started, seconds) of every request-otp and verify-otp call.
    durations: list[tuple[float, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    attempts: int = 0

    def attempt(self) -> None:
        self.attempts += 1
        email = new_email("steady")
        client = client_from(self.app, f"127.0.6.{self.attempts % 250 + 1}")
        started = time.monotonic()
        asked = client.post("/auth/request-otp", json={"email": email})
        self.durations.append((started, time.monotonic() - started))
        if asked.status_code != 202:
            self.refusals["request", asked.status_code, asked.get_json()["error"]["code"]] += 1
            time.sleep(0.1)
            return
        try:
            message = self.inbox.wait_for(email, timeout=15)[0]
        except TimeoutError:  # the worker could not read Redis in time
            self.refusals["email", 0, "not_sent"] += 1
            return
        match = re.search(r"\b(\d{6})\b", plain_text(message))
        assert match
        started = time.monotonic()
        verified = client.post("/auth/verify-otp", json={"email": email, "otp": match.group(1)})
        self.durations.append((started, time.monotonic() - started))
        if verified.status_code == 200:
            self.accepted.append((email, verified.get_json()["access_token"], time.monotonic()))
        else:
            self.refusals["verify", verified.status_code, verified.get_json()["error"]["code"]] += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.attempt()


@dataclass
class ProtectedReads:
    """`GET /auth/me` with one token, back to back: each read is one Redis round trip."""

    app: Flask
    token: str
    calls: list[tuple[float, float, int]] = field(default_factory=list)  # start, s, status
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        client = client_from(self.app, "127.0.5.3")
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self.stop.is_set():
            started = time.monotonic()
            status = client.get("/auth/me", headers=headers).status_code
            self.calls.append((started, time.monotonic() - started, status))
            time.sleep(0.02)
