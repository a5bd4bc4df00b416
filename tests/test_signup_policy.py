"""Who may sign up: domain allow and deny lists, and disposable addresses.

Decided by the worker (no code mailed) and the sign-in store (no account made), never
by request-otp's answer: every address gets the same bytes back.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from app.extensions import db
from app.models import User
from flask_email_signin.signup_policy import signup_allowed
from support import AuthActions, new_email


def exact(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, list(response.headers.items()), response.get_data()


def ask(auth: AuthActions, email: str) -> Any:
    return exact(auth.client.post("/auth/request-otp", json={"email": email},
                                  headers={"X-Request-ID": "signup-policy-probe-01"}))


def test_a_disposable_address_gets_the_same_answer_and_no_code(auth: AuthActions) -> None:
    disposable = f"{new_email().split('@')[0]}@mailinator.com"
    under = f"{new_email().split('@')[0]}@eu.mailinator.com"
    ordinary = new_email()
    answers = {email: ask(auth, email) for email in (disposable, under, ordinary)}
    assert answers[ordinary][0] == 202
    assert answers[disposable] == answers[ordinary] == answers[under]
    # The worker handles tasks in order: once the ordinary email arrived, theirs would have.
    auth.inbox.wait_for(ordinary)
    assert auth.inbox.to(disposable) == [] and auth.inbox.to(under) == []


def test_an_existing_account_at_a_disposable_domain_still_signs_in(auth: AuthActions) -> None:
    email = f"{new_email().split('@')[0]}@mailinator.com"
    db.session.add(User(email=email))
    db.session.commit()
    auth.sign_in(email)
    assert auth.client.get("/auth/me").get_json()["email"] == email


def test_the_disposable_check_can_be_turned_off(
    auth: AuthActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_SIGNUP_BLOCK_DISPOSABLE", False)
    email = f"{new_email().split('@')[0]}@mailinator.com"
    auth.sign_in(email)
    assert db.session.scalar(db.select(User).where(User.email == email)) is not None


def test_only_allowed_domains_sign_up_and_denied_ones_never(
    auth: AuthActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_SIGNUP_ALLOWED_DOMAINS", ["corp.example.com"])
    monkeypatch.setitem(
        auth.app.config, "OTP_SIGNUP_DENIED_DOMAINS", "contractors.corp.example.com"
    )
    local = new_email().split("@")[0]
    outsider, denied, staff = (f"{local}@{domain}" for domain in (
        "other.example.com", "x.contractors.corp.example.com", "eu.corp.example.com"))
    answers = {email: ask(auth, email) for email in (outsider, denied, staff)}
    assert answers[outsider] == answers[denied] == answers[staff]
    auth.inbox.wait_for(staff)
    assert auth.inbox.to(outsider) == [] and auth.inbox.to(denied) == []
    assert auth.verify(staff, auth.read_code_from_inbox(staff)).status_code == 200


@pytest.mark.parametrize(
    ("config", "email", "allowed"),
    [
        ({}, "a@example.com", True),
        ({}, "a@mailinator.com", False),
        ({}, "a@MAILINATOR.com", False),
        ({"OTP_SIGNUP_ALLOWED_DOMAINS": "corp.example.com, @lab.example.org"},
         "a@lab.example.org", True),
        ({"OTP_SIGNUP_ALLOWED_DOMAINS": ["corp.example.com"]}, "a@notcorp.example.com", False),
        ({"OTP_SIGNUP_DENIED_DOMAINS": ["example.net"]}, "a@sub.example.net", False),
        ({"OTP_ALLOW_SIGNUP": False}, "a@example.com", False),
    ],
)
def test_the_policy(
    app: Flask, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], email: str,
    allowed: bool,
) -> None:
    for key, value in config.items():
        monkeypatch.setitem(app.config, key, value)
    with app.app_context():
        assert signup_allowed(email) is allowed
