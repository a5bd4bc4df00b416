"""Passkeys over HTTP, with a software authenticator producing real signatures.

Every rule of the ceremonies: challenges single use and bound to their session or
ceremony, the relying party and origin checked, counters that go back refused,
failures counted towards the email's lock, enumeration-safe options, and step-up.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify
from flask.testing import FlaskClient
from soft_authenticator import SoftAuthenticator
from test_config import production_config

from app import create_app
from flask_email_signin import UnsafeSettingError, fresh_login_required
from flask_email_signin.passkey_store import TABLE_NAME
from flask_email_signin.settings import settings
from support import AuthActions, error_code, new_email


@pytest.fixture
def authenticator(app: Flask) -> SoftAuthenticator:
    with app.app_context():
        return SoftAuthenticator(settings.webauthn_rp_id, settings.webauthn_origins[0])


def register(auth: AuthActions, authenticator: SoftAuthenticator, **body: Any) -> Any:
    options = auth.client.post("/auth/passkeys/register/options", headers=auth.csrf_header())
    assert options.status_code == 200, options.get_json()
    credential = authenticator.create(options.get_json())
    return auth.client.post(
        "/auth/passkeys/register", json={"credential": credential, **body},
        headers=auth.csrf_header(),
    )


def begin(client: FlaskClient, email: str | None = None) -> dict[str, Any]:
    answer = client.post("/auth/passkeys/authenticate/options",
                         json={"email": email} if email else None)
    assert answer.status_code == 200
    return dict(answer.get_json())


def finish(client: FlaskClient, ceremony: str, credential: dict[str, Any]) -> Any:
    return client.post("/auth/passkeys/authenticate",
                       json={"ceremony": ceremony, "credential": credential})


@pytest.fixture
def with_passkey(auth: AuthActions, email: str, authenticator: SoftAuthenticator) -> str:
    """`email` signed in by code, with one passkey registered."""
    auth.sign_in(email)
    created = register(auth, authenticator)
    assert created.status_code == 201, created.get_json()
    return email


def test_registration_stores_the_passkey_named_after_the_device(
    auth: AuthActions, with_passkey: str, app: Flask, authenticator: SoftAuthenticator
) -> None:
    listed = auth.client.get("/auth/passkeys").get_json()["passkeys"]
    assert len(listed) == 1 and listed[0]["name"].startswith("Passkey on ")
    assert listed[0]["transports"] == ["internal"] and listed[0]["last_used_at"] is None
    with app.app_context():
        row = app.extensions["sqlalchemy"].session.execute(
            sa.text(f"SELECT credential_id, sign_count FROM {TABLE_NAME}")
        ).all()
    assert any(bytes(r[0]) == authenticator.credential_id for r in row)
    # The same authenticator again: refused (its id is excluded, and unique).
    again = register(auth, authenticator)
    assert again.status_code == 409 and error_code(again) == "passkey_already_registered"


def test_a_registration_challenge_works_once_and_only_for_its_session(
    auth: AuthActions, email: str, authenticator: SoftAuthenticator
) -> None:
    auth.sign_in(email)
    options = auth.client.post("/auth/passkeys/register/options", headers=auth.csrf_header())
    credential = authenticator.create(options.get_json())
    first = auth.client.post("/auth/passkeys/register", json={"credential": credential},
                             headers=auth.csrf_header())
    assert first.status_code == 201
    replay = auth.client.post("/auth/passkeys/register", json={"credential": credential},
                              headers=auth.csrf_header())
    assert replay.status_code == 400 and error_code(replay) == "passkey_ceremony_expired"


def test_registration_needs_a_signed_in_user(client: FlaskClient) -> None:
    answer = client.post("/auth/passkeys/register/options")
    assert answer.status_code == 401 and error_code(answer) == "token_missing"


def test_sign_in_with_a_passkey_is_a_session_like_any_other(
    app: Flask, with_passkey: str, authenticator: SoftAuthenticator
) -> None:
    device = app.test_client()
    started = begin(device)
    assert started["options"]["rpId"] == authenticator.rp_id
    assert "allowCredentials" not in started["options"] or not started["options"][
        "allowCredentials"]  # discoverable: nothing to type
    signed_in = finish(device, started["ceremony"], authenticator.get(started["options"]))
    assert signed_in.status_code == 200, signed_in.get_json()
    assert signed_in.get_json()["user"]["email"] == with_passkey
    assert device.get_cookie("csrf_access_token") is not None
    sessions = device.get("/auth/sessions").get_json()["sessions"]
    assert [s["method"] for s in sessions if s["current"]] == ["passkey"]
    listed = device.get("/auth/passkeys").get_json()["passkeys"]
    assert listed[0]["last_used_at"] is not None


def test_a_replayed_assertion_is_refused(
    app: Flask, with_passkey: str, authenticator: SoftAuthenticator
) -> None:
    device = app.test_client()
    started = begin(device)
    assertion = authenticator.get(started["options"])
    assert finish(device, started["ceremony"], assertion).status_code == 200
    replayed = finish(app.test_client(), started["ceremony"], assertion)
    assert replayed.status_code == 400 and error_code(replayed) == "passkey_ceremony_expired"
    # Nor does the same assertion pass under a new ceremony: the challenge differs.
    fresh = begin(device)
    moved = finish(device, fresh["ceremony"], assertion)
    assert moved.status_code == 401 and error_code(moved) == "passkey_invalid"


@pytest.mark.parametrize("tamper", ["rp_id", "origin", "counter"])
def test_another_relying_party_origin_or_a_counter_going_back_is_refused(
    app: Flask, with_passkey: str, authenticator: SoftAuthenticator, tamper: str
) -> None:
    device = app.test_client()
    if tamper == "counter":  # a clone: the counter does not move forward
        started = begin(device)
        assert finish(device, started["ceremony"], authenticator.get(started["options"],
                      sign_count=5)).status_code == 200
    started = begin(device)
    changes: dict[str, Any] = {
        "rp_id": {"rp_id": "other.example"},
        "origin": {"origin": "https://evil.example"},
        "counter": {"sign_count": 5},
    }[tamper]
    refused = finish(device, started["ceremony"], authenticator.get(started["options"], **changes))
    assert refused.status_code == 401 and error_code(refused) == "passkey_invalid"


def test_an_unknown_passkey_is_refused(app: Flask, authenticator: SoftAuthenticator) -> None:
    device = app.test_client()
    started = begin(device)
    stranger = finish(device, started["ceremony"], authenticator.get(started["options"]))
    assert stranger.status_code == 401 and error_code(stranger) == "passkey_unknown"


def test_failed_assertions_count_towards_the_email_lock(
    app: Flask, with_passkey: str, authenticator: SoftAuthenticator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "OTP_MAX_FAILURES", 2)
    device = app.test_client()
    for expected in ("passkey_invalid", "verification_locked"):
        started = begin(device)
        bad = finish(device, started["ceremony"],
                     authenticator.get(started["options"], origin="https://evil.example"))
        assert error_code(bad) == expected
    # Locked now, even for a good assertion, and for codes alike.
    started = begin(device)
    locked = finish(device, started["ceremony"], authenticator.get(started["options"]))
    assert locked.status_code == 429 and error_code(locked) == "verification_locked"
    assert int(locked.headers["Retry-After"]) > 0


def test_options_for_an_email_do_not_tell_who_has_a_passkey(
    app: Flask, with_passkey: str
) -> None:
    device = app.test_client()
    known = begin(device, with_passkey)["options"]["allowCredentials"]
    stranger_email = new_email()
    unknown = begin(device, stranger_email)["options"]["allowCredentials"]
    again = begin(device, stranger_email)["options"]["allowCredentials"]
    assert len(known) == len(unknown) == 1
    assert unknown == again  # stable, like a real one
    assert set(unknown[0]) <= set(known[0]) | {"transports"}


def test_rename_and_delete_only_ones_own_passkeys(
    app: Flask, auth: AuthActions, with_passkey: str
) -> None:
    passkey_id = auth.client.get("/auth/passkeys").get_json()["passkeys"][0]["id"]
    renamed = auth.client.patch(f"/auth/passkeys/{passkey_id}", json={"name": "  Phone  "},
                                headers=auth.csrf_header())
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "Phone"
    assert auth.client.patch(f"/auth/passkeys/{passkey_id}", json={"name": ""},
                             headers=auth.csrf_header()).status_code == 422
    other = AuthActions(app.test_client(), auth.inbox, app)
    other.sign_in(new_email())
    assert other.client.delete(f"/auth/passkeys/{passkey_id}",
                               headers=other.csrf_header()).status_code == 404
    assert other.client.patch(f"/auth/passkeys/{passkey_id}", json={"name": "x"},
                              headers=other.csrf_header()).status_code == 404
    deleted = auth.client.delete(f"/auth/passkeys/{passkey_id}", headers=auth.csrf_header())
    assert deleted.status_code == 200
    assert auth.client.get("/auth/passkeys").get_json()["passkeys"] == []


def test_sensitive_actions_need_a_recent_authentication_passkey_or_code(
    app: Flask, auth: AuthActions, with_passkey: str, authenticator: SoftAuthenticator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "OTP_FRESH_LOGIN_SECONDS", -1)  # nothing is recent enough
    passkey_id = auth.client.get("/auth/passkeys").get_json()["passkeys"][0]["id"]
    stale = auth.client.delete(f"/auth/passkeys/{passkey_id}", headers=auth.csrf_header())
    assert stale.status_code == 401 and error_code(stale) == "fresh_login_required"
    assert auth.client.post("/auth/logout-all", headers=auth.csrf_header()).status_code == 401

    monkeypatch.setitem(app.config, "OTP_FRESH_LOGIN_SECONDS", 300)
    # An old sign-in (auth_time in the past) steps up with its passkey...
    started = auth.client.post("/auth/step-up/options", headers=auth.csrf_header()).get_json()
    stepped = auth.client.post(
        "/auth/step-up",
        json={"ceremony": started["ceremony"], "credential": authenticator.get(started["options"])},
        headers=auth.csrf_header(),
    )
    assert stepped.status_code == 200 and stepped.get_json()["access_token"]
    # ... and with a code from a fresh email.
    monkeypatch.setitem(app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)
    assert auth.client.post("/auth/step-up/code", headers=auth.csrf_header()).status_code == 202
    code = auth.read_code_from_inbox(with_passkey, count=2)
    by_code = auth.client.post("/auth/step-up", json={"otp": code}, headers=auth.csrf_header())
    assert by_code.status_code == 200
    assert auth.client.delete(f"/auth/passkeys/{passkey_id}",
                              headers=auth.csrf_header()).status_code == 200
    # One proof at a time.
    both = auth.client.post(
        "/auth/step-up",
        json={"otp": code, "ceremony": started["ceremony"], "credential": {"id": "x",
                                                                          "response": {}}},
        headers=auth.csrf_header(),
    )
    assert both.status_code == 422 and error_code(both) == "validation_failed"


def test_a_step_up_ceremony_belongs_to_its_session(
    app: Flask, auth: AuthActions, with_passkey: str, authenticator: SoftAuthenticator
) -> None:
    started = auth.client.post("/auth/step-up/options", headers=auth.csrf_header()).get_json()
    other = AuthActions(app.test_client(), auth.inbox, app)
    other.sign_in(new_email())
    stolen = other.client.post(
        "/auth/step-up",
        json={"ceremony": started["ceremony"], "credential": authenticator.get(started["options"])},
        headers=other.csrf_header(),
    )
    assert stolen.status_code == 400 and error_code(stolen) == "passkey_ceremony_expired"
    # Nor is a step-up ceremony a sign-in one.
    started = auth.client.post("/auth/step-up/options", headers=auth.csrf_header()).get_json()
    signin = finish(app.test_client(), started["ceremony"], authenticator.get(started["options"]))
    assert error_code(signin) == "passkey_ceremony_expired"


def test_hosts_decorate_their_own_views(suite_config: type, app: Flask) -> None:
    host = create_app(suite_config)

    @host.post("/host/danger")
    @fresh_login_required(max_age=-1)
    def danger() -> Any:
        return jsonify(ok=True)

    try:
        client = host.test_client()
        assert client.post("/host/danger").status_code == 401
        with host.test_request_context():
            from flask_email_signin.sessions import start_session
            from flask_email_signin.state import user_store

            user = user_store().sign_in(new_email(), allow_signup=True)
            access, _refresh = start_session(user, ip="127.0.0.1", user_agent="t")
        refused = client.post("/host/danger", headers={"Authorization": f"Bearer {access}"})
        assert refused.status_code == 401 and error_code(refused) == "fresh_login_required"
        assert refused.get_json()["error"]["details"]["max_age"] == -1
    finally:
        host.extensions["email_signin"].redis.close()


@pytest.mark.parametrize(
    ("settings_", "refused"),
    [
        ({"OTP_LINK_BASE_URL": "https://signin.example.org"}, False),
        ({"OTP_LINK_BASE_URL": "https://signin.example.org",
          "OTP_WEBAUTHN_ORIGINS": ["http://signin.example.org"]}, True),
        ({"OTP_LINK_BASE_URL": "https://signin.example.org",
          "OTP_WEBAUTHN_ORIGINS": ["http://localhost:8000"]}, False),  # the machine itself
    ],
)
def test_production_refuses_passkey_origins_without_https(
    suite_config: type, settings_: dict[str, Any], refused: bool
) -> None:
    config = production_config(suite_config, **settings_)
    if refused:
        with pytest.raises(UnsafeSettingError, match="OTP_WEBAUTHN_ORIGINS"):
            create_app(config)
    else:
        create_app(config).extensions["email_signin"].redis.close()


@pytest.mark.parametrize(
    ("settings_", "problem"),
    [
        ({"OTP_LINK_BASE_URL": "http://127.0.0.1:8000"}, "not a domain"),
        ({"OTP_LINK_BASE_URL": "https://signin.example.org",
          "OTP_WEBAUTHN_RP_ID": "example.com"}, "is not on OTP_WEBAUTHN_RP_ID"),
        ({"OTP_LINK_BASE_URL": "https://signin.example.org",
          "OTP_WEBAUTHN_RP_ID": "example.org"}, None),  # a parent domain: fine
    ],
)
def test_settings_that_make_passkeys_unusable_are_logged_at_start(
    suite_config: type, settings_: dict[str, Any], problem: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="flask_email_signin.extension"):
        host = create_app(type("Passkeys", (suite_config,), settings_))
    host.extensions["email_signin"].redis.close()
    messages = [record.getMessage() for record in caplog.records]
    warnings = [message for message in messages if "passkeys will not work" in message]
    if problem is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and problem in warnings[0]


@pytest.mark.parametrize("passkey_id", [0, 2**31, 2**63, 10**30])
def test_an_id_no_database_integer_can_hold_is_not_found(
    auth: AuthActions, email: str, passkey_id: int
) -> None:
    """Found by the stateful run: an id past the column's 32 bits reached the database
    (PostgreSQL: integer out of range; SQLite could not bind one past 64 bits)."""
    auth.sign_in(email)
    deleted = auth.client.delete(f"/auth/passkeys/{passkey_id}", headers=auth.csrf_header())
    renamed = auth.client.patch(f"/auth/passkeys/{passkey_id}", json={"name": "x"},
                                headers=auth.csrf_header())
    for answer in (deleted, renamed):
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (
            404, "passkey_not_found"
        )
