"""Invite-only sign-in does not reveal who has an account (ASVS 5.0 6.3.8)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from app.extensions import db
from app.models import User
from flask_email_signin.code_store import code_key
from flask_email_signin.codes import email_tag
from support import AuthActions, new_email


def add_user(email: str, *, active: bool) -> None:
    db.session.add(User(email=email, is_active=active))
    db.session.commit()


def exact(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Everything a client can observe: status, every header in order, the body bytes."""
    return response.status_code, list(response.headers.items()), response.get_data()


def test_unknown_and_inactive_emails_get_the_same_answer_and_no_email(
    auth: AuthActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_ALLOW_SIGNUP", False)
    known, inactive, unknown = new_email("known"), new_email("inactive"), new_email("unknown")
    add_user(known, active=True)
    add_user(inactive, active=False)

    # Unknown and inactive first: the worker handles tasks in order (FIFO), so once the
    # known address's email has arrived, theirs would have arrived before it.
    # One client-chosen request id for all three, as it is echoed in a response header.
    probe = {"X-Request-ID": "enumeration-probe-0001"}
    answers = {
        email: exact(auth.client.post("/auth/request-otp", json={"email": email}, headers=probe))
        for email in (unknown, inactive, known)
    }
    assert answers[known][0] == 202
    assert answers[unknown] == answers[known]
    assert answers[inactive] == answers[known]

    auth.inbox.wait_for(known)
    assert auth.inbox.to(unknown) == []
    assert auth.inbox.to(inactive) == []

    # The request path did the same work for all three: each has a live code record
    # (the worker, not the view, decided not to send).
    client = redis.Redis.from_url(auth.app.config["OTP_REDIS_URL"])
    for email in (unknown, inactive, known):
        assert client.hexists(code_key(email_tag(email)), "c"), email


def test_with_sign_up_closed_an_unknown_email_cannot_create_an_account(
    auth: AuthActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_ALLOW_SIGNUP", False)
    unknown = new_email("unknown")
    assert auth.request_code(unknown).status_code == 202
    # Whatever is guessed, no account appears for an address that was never invited.
    response = auth.verify(unknown, "000000")
    assert response.status_code == 401
    assert db.session.scalar(db.select(User).where(User.email == unknown)) is None
