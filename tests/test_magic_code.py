"""The development magic code: on in development/testing only, never emails."""

from __future__ import annotations

import pytest

from support import AuthActions, error_code, new_email

MAGIC = "000000"


def test_magic_code_signs_in_any_email_and_queues_no_email(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_DEV_MAGIC_CODE", MAGIC)
    assert auth.request_code(email).status_code == 202
    response = auth.verify(email, MAGIC)
    assert response.status_code == 200 and response.get_json()["user"]["email"] == email

    # The worker handles tasks in order: once a later email has arrived,
    # an email for the magic request would have arrived before it.
    monkeypatch.setitem(auth.app.config, "OTP_DEV_MAGIC_CODE", None)
    sentinel = new_email("sentinel")
    auth.request_code(sentinel)
    auth.inbox.wait_for(sentinel)
    assert auth.inbox.to(email) == []


def test_without_magic_code_the_same_digits_fail(auth: AuthActions, email: str) -> None:
    auth.request_code(email)
    auth.read_code_from_inbox(email)
    response = auth.verify(email, MAGIC)
    assert response.status_code == 401 and error_code(response) in {"otp_invalid"}
