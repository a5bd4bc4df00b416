"""Changing the address: a code to the new one, a notice and undo link to the old one,
other sessions ended, enumeration-safe, single use, step-up first."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.devtools.inbox import Inbox, plain_text
from flask_email_signin import signals
from support import AuthActions, error_code, new_email, other_code


def signed_in_client(app: Flask, inbox: Inbox, email: str) -> AuthActions:
    other = AuthActions(app.test_client(), inbox, app)
    before = len(inbox.to(email))
    assert other.request_code(email).status_code == 202
    assert other.verify(email, other.read_code_from_inbox(email, before + 1)).status_code == 200
    return other


def ask_for_change(auth: AuthActions, new: str) -> Any:
    return auth.client.post("/auth/email-change", json={"email": new},
                            headers=auth.csrf_header())


def link_in(message: Any, path: str) -> tuple[str, str]:
    """(path, secret) of the link to `path` in an email."""
    match = re.search(rf"https?://[^/\s]+(/auth/{path}[^#\s]*)#([A-Za-z0-9_-]+)",
                      plain_text(message))
    assert match, plain_text(message)
    return match.group(1), match.group(2)


def user_email(auth: AuthActions) -> str:
    return str(auth.client.get("/auth/me").get_json()["email"])


def test_change_confirm_notice_and_undo_end_to_end(
    auth: AuthActions, email: str, app: Flask, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)  # three sign-ins here
    auth.sign_in(email)
    elsewhere = signed_in_client(app, inbox, email)
    new = new_email("moved")
    changed: list[dict[str, Any]] = []

    def on_change(_app: Flask, **arguments: Any) -> None:
        changed.append(arguments)

    signals.email_changed.connect(on_change, sender=app)
    try:
        asked = ask_for_change(auth, new)
        assert asked.status_code == 202, asked.get_json()
        code = auth.read_code_from_inbox(new)
        assert "Confirm your new" in inbox.wait_for(new)[0]["Subject"]
        sign_in_emails = len(inbox.to(email))
        confirmed = auth.client.post("/auth/email-change/confirm", json={"otp": code},
                                     headers=auth.csrf_header())
        assert confirmed.status_code == 200, confirmed.get_json()
        assert confirmed.get_json()["email"] == new
        assert user_email(auth) == new  # this session stays
        assert elsewhere.client.get("/auth/me").status_code == 401  # the others ended

        # The old address is told, with a single-use undo link.
        notice = inbox.wait_for(email, count=sign_in_emails + 1)[-1]
        assert new in plain_text(notice) and "changed" in notice["Subject"]
        path, secret = link_in(notice, "email-change/")
        assert auth.client.get(path).status_code == 200  # the page changes nothing
        assert user_email(auth) == new
        undone = auth.client.post(path, data={"secret": secret})
        assert undone.status_code == 200 and email in undone.get_data(as_text=True)
        assert auth.client.get("/auth/me").status_code == 401  # every session ended
        again = AuthActions(app.test_client(), inbox, app)
        assert again.request_code(email).status_code == 202
        code = again.read_code_from_inbox(email, count=sign_in_emails + 2)
        assert again.verify(email, code).status_code == 200
        assert user_email(again) == email
        assert app.test_client().post(path, data={"secret": secret}).status_code == 400
    finally:
        signals.email_changed.disconnect(on_change, sender=app)
    assert [c["undone"] for c in changed] == [False, True]
    assert changed[0]["old_email"] == email and changed[0]["new_email"] == new


def test_the_link_to_the_new_address_confirms_too(
    auth: AuthActions, email: str, inbox: Inbox
) -> None:
    auth.sign_in(email)
    new = new_email("linked")
    assert ask_for_change(auth, new).status_code == 202
    path, secret = link_in(inbox.wait_for(new)[0], "email-change/")
    page = auth.client.get(path)
    assert page.status_code == 200 and "Confirm this address" in page.get_data(as_text=True)
    done = auth.client.post(path, data={"secret": secret})
    assert done.status_code == 200 and new in done.get_data(as_text=True)
    assert user_email(auth) == new
    # Single use: the code of the same change no longer works.
    code = auth.read_code_from_inbox(new)
    late = auth.client.post("/auth/email-change/confirm", json={"otp": code},
                            headers=auth.csrf_header())
    assert error_code(late) == "email_change_not_pending"


def test_a_taken_address_answers_the_same_and_gets_a_notice_instead(
    auth: AuthActions, email: str, app: Flask, inbox: Inbox
) -> None:
    taken = new_email("taken")
    signed_in_client(app, inbox, taken)
    auth.sign_in(email)
    free = ask_for_change(auth, new_email("free"))
    refused = ask_for_change(auth, taken)
    assert refused.status_code == free.status_code == 202
    assert refused.get_json() == free.get_json()
    assert sorted(refused.headers.keys()) == sorted(free.headers.keys())
    notice = inbox.wait_for(taken, count=2)[1]
    assert "already has an account" in plain_text(notice)
    assert not re.search(r"\b\d{6}\b", plain_text(notice))  # no code
    late = auth.client.post("/auth/email-change/confirm", json={"otp": "123456"},
                            headers=auth.csrf_header())
    assert error_code(late) == "email_change_not_pending"
    assert user_email(auth) == email


def test_wrong_codes_are_counted_and_end_the_change(
    auth: AuthActions, email: str, app: Flask
) -> None:
    auth.sign_in(email)
    new = new_email("guess")
    ask_for_change(auth, new)
    code = auth.read_code_from_inbox(new)
    tries = app.config["OTP_MAX_ATTEMPTS"]
    answers = [
        auth.client.post("/auth/email-change/confirm", json={"otp": other_code(code)},
                         headers=auth.csrf_header())
        for _ in range(tries)
    ]
    assert [error_code(a) for a in answers] == (
        ["email_change_code_invalid"] * (tries - 1) + ["email_change_locked"]
    )
    assert answers[0].get_json()["error"]["details"]["attempts_left"] == tries - 1
    right = auth.client.post("/auth/email-change/confirm", json={"otp": code},
                             headers=auth.csrf_header())
    assert error_code(right) == "email_change_not_pending"
    assert user_email(auth) == email


def test_changing_needs_a_recent_authentication(
    auth: AuthActions, email: str, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth.sign_in(email)
    monkeypatch.setitem(app.config, "OTP_FRESH_LOGIN_SECONDS", 0)
    stale = ask_for_change(auth, new_email())
    assert stale.status_code == 401 and error_code(stale) == "fresh_login_required"


@pytest.mark.parametrize("body", [
    {"email": "not an address"}, {"email": ""}, {}, {"email": ["a@example.com"]},
])
def test_bad_requests_are_refused_in_the_envelope(
    auth: AuthActions, email: str, body: dict[str, Any]
) -> None:
    auth.sign_in(email)
    response = auth.client.post("/auth/email-change", json=body, headers=auth.csrf_header())
    assert response.status_code == 422 and error_code(response) == "validation_failed"


def test_the_same_address_and_forged_links_are_refused(
    auth: AuthActions, email: str, client: FlaskClient
) -> None:
    auth.sign_in(email)
    assert error_code(ask_for_change(auth, email.upper())) == "email_unchanged"
    forged = client.post("/auth/email-change/undo", json={"user_id": 1, "secret": "x" * 43})
    assert forged.status_code == 400 and error_code(forged) == "email_change_link_invalid"
    malformed = client.post("/auth/email-change/undo", json={"user_id": "1", "secret": 5})
    assert malformed.status_code == 422
    page = client.post("/auth/email-change/1/undo", data={"secret": "short"})
    assert page.status_code == 400 and "does not work" in page.get_data(as_text=True)
