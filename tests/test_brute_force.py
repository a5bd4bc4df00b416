"""Guessing and flooding: lockout across codes, its end and reset, the hourly cap."""

from __future__ import annotations

import math
import time

import pytest

from support import AuthActions, error_code, new_email, other_code


def fresh_code(auth: AuthActions, email: str, count: int) -> str:
    """Request a code (cooldown off) and read it from the `count`-th email."""
    assert auth.request_code(email).status_code == 202
    return auth.read_code_from_inbox(email, count=count)


@pytest.fixture
def no_cooldown(auth: AuthActions, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets a test ask for new codes at once (the cooldown has its own test)."""
    monkeypatch.setitem(auth.app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)


def test_failures_count_across_codes_until_the_email_is_locked(
    auth: AuthActions, email: str, no_cooldown: None
) -> None:
    config = auth.app.config
    assert (config["OTP_MAX_ATTEMPTS"], config["OTP_MAX_FAILURES"]) == (5, 10)  # the defaults

    first = fresh_code(auth, email, count=1)
    for _ in range(5):
        assert auth.verify(email, other_code(first)).status_code == 401
    # A new code gets new attempts, but not a new guess budget.
    second = fresh_code(auth, email, count=2)
    for left in (4, 3, 2, 1):
        response = auth.verify(email, other_code(second))
        assert response.get_json()["error"]["details"]["attempts_left"] == left
    locked = auth.verify(email, other_code(second))  # the 10th consecutive failure
    assert locked.status_code == 429 and error_code(locked) == "verification_locked"
    assert int(locked.headers["Retry-After"]) == config["OTP_LOCKOUT_SECONDS"]

    # Locked: even the right code is refused, and so is a brand-new one.
    refused = auth.verify(email, second)
    assert refused.status_code == 429 and error_code(refused) == "verification_locked"
    assert 0 < int(refused.headers["Retry-After"]) <= config["OTP_LOCKOUT_SECONDS"]
    third = fresh_code(auth, email, count=3)
    assert error_code(auth.verify(email, third)) == "verification_locked"

    # The lock is per email.
    other = new_email()
    assert auth.verify(other, other_code(fresh_code(auth, other, count=1))).status_code == 401


def test_the_lockout_ends_after_its_time(
    auth: AuthActions, email: str, no_cooldown: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_MAX_FAILURES", 3)
    monkeypatch.setitem(auth.app.config, "OTP_LOCKOUT_SECONDS", 2)
    code = fresh_code(auth, email, count=1)
    for _ in range(2):
        assert error_code(auth.verify(email, other_code(code))) == "otp_invalid"
    assert error_code(auth.verify(email, other_code(code))) == "verification_locked"
    assert error_code(auth.verify(email, code)) == "verification_locked"
    time.sleep(3)  # Redis's clock decides; wait out the 2 s lock with a margin
    assert auth.verify(email, code).status_code == 200


def test_a_success_resets_the_failure_count(
    auth: AuthActions, email: str, no_cooldown: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_MAX_FAILURES", 3)
    first = fresh_code(auth, email, count=1)
    for _ in range(2):
        assert error_code(auth.verify(email, other_code(first))) == "otp_invalid"
    assert auth.verify(email, first).status_code == 200

    # Without the reset, the next failure would be the third in a row and lock.
    second = fresh_code(auth, email, count=2)
    for _ in range(2):
        assert error_code(auth.verify(email, other_code(second))) == "otp_invalid"
    assert auth.verify(email, second).status_code == 200


def test_the_hourly_cap_on_codes_per_email(
    auth: AuthActions, email: str, no_cooldown: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_HOURLY_SEND_LIMIT", 3)
    for sent in (1, 2, 3):
        last = fresh_code(auth, email, count=sent)
    capped = auth.request_code(email)
    assert capped.status_code == 429 and error_code(capped) == "too_many_codes"
    assert 0 < int(capped.headers["Retry-After"]) <= 3600
    # The refused request issued nothing: the last code sent still works.
    assert auth.verify(email, last).status_code == 200


def test_default_guess_budget_is_far_below_nist_and_asvs_limits(auth: AuthActions) -> None:
    """NIST SP 800-63B §5.2.2 and ASVS 4.0.3 2.2.1 allow at most 100 failures per hour."""
    config = auth.app.config
    locks_per_hour = math.ceil(3600 / config["OTP_LOCKOUT_SECONDS"])
    guesses_per_hour = config["OTP_MAX_FAILURES"] * locks_per_hour
    assert guesses_per_hour <= 40 < 100
    # And each code dies after a few tries, whatever the budget.
    assert config["OTP_MAX_ATTEMPTS"] <= config["OTP_MAX_FAILURES"]
    assert config["OTP_TTL_SECONDS"] <= 600  # NIST §5.1.3.2 / ASVS 2.7.2: 10 minutes
