"""POST /auth/verify-otp: single use, attempts, expiry, accounts."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import User
from support import AuthActions, error_code, other_code


def test_a_code_verifies_only_once(auth: AuthActions, email: str) -> None:
    auth.request_code(email)
    code = auth.read_code_from_inbox(email)
    assert auth.verify(email, code).status_code == 200
    again = auth.verify(email, code)
    assert again.status_code == 401 and error_code(again) == "otp_used"


def test_a_wrong_code_is_401_and_counts_an_attempt(auth: AuthActions, email: str) -> None:
    auth.request_code(email)
    code = auth.read_code_from_inbox(email)
    response = auth.verify(email, other_code(code))
    assert response.status_code == 401 and error_code(response) == "otp_invalid"
    assert response.get_json()["error"]["details"]["attempts_left"] == 4


def test_after_max_attempts_the_code_is_dead_even_when_right(
    auth: AuthActions, email: str
) -> None:
    auth.request_code(email)
    code = auth.read_code_from_inbox(email)
    for _ in range(auth.app.config["OTP_MAX_ATTEMPTS"]):
        assert auth.verify(email, other_code(code)).status_code == 401
    response = auth.verify(email, code)
    assert response.status_code == 401 and error_code(response) == "otp_attempts_exceeded"


def test_an_expired_code_is_refused(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_TTL_SECONDS", 2)
    auth.request_code(email)
    code = auth.read_code_from_inbox(email)
    time.sleep(3)
    response = auth.verify(email, code)
    assert response.status_code == 401 and error_code(response) == "otp_expired"


def test_verify_without_any_code_requested(auth: AuthActions, email: str) -> None:
    response = auth.verify(email, "123456")
    assert response.status_code == 401 and error_code(response) == "otp_expired"


def test_an_inactive_user_is_refused(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth.sign_in(email)
    with auth.app.app_context():
        db.session.execute(sa.update(User).where(User.email == email).values(is_active=False))
        db.session.commit()
    monkeypatch.setitem(auth.app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)
    auth.request_code(email)
    response = auth.verify(email, auth.read_code_from_inbox(email, count=2))
    assert response.status_code == 403 and error_code(response) == "account_inactive"


@pytest.mark.parametrize(
    "body",
    [
        {"otp": "123456"},
        {"email": "a@example.com"},
        {"email": "a@example.com", "otp": 123456},
        {"email": "a@example.com", "otp": None},
        {"email": "a@example.com", "otp": "12345"},
        {"email": "a@example.com", "otp": "1234567"},
        {"email": "a@example.com", "otp": "12a456"},
        {"email": "a@example.com", "otp": "１２３４５６"},  # fullwidth digits
        {"email": "a@example.com", "otp": " 123456"},
        {"email": "a@example.com", "otp": "123456", "remember": True},
    ],
)
def test_malformed_bodies_get_422(auth: AuthActions, body: dict[str, object]) -> None:
    response = auth.client.post("/auth/verify-otp", json=body)
    assert response.status_code == 422 and error_code(response) == "validation_failed"
    assert response.get_json()["error"]["details"]["fields"]
