"""The blinker signals hosts connect to: each sent once, with its documented arguments,
from the app that did the work, and never with a code, link secret or token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from blinker import NamedSignal
from flask import Flask
from soft_authenticator import SoftAuthenticator

from flask_email_signin import signals
from flask_email_signin.settings import settings
from support import AuthActions, new_email


@contextmanager
def recorded(app: Flask, *watched: NamedSignal) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for signal in watched:
        def receiver(sender: Flask, _name: str = signal.name, **arguments: Any) -> None:
            assert sender is app
            calls.append((_name, arguments))
        signal.connect(receiver, sender=app)
        receivers.append((signal, receiver))
    try:
        yield calls
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver, sender=app)


def test_a_first_sign_in_creates_then_signs_in_and_a_second_only_signs_in(
    auth: AuthActions, email: str, app: Flask
) -> None:
    with recorded(app, signals.user_created, signals.user_signed_in, signals.code_sent) as calls:
        response = auth.sign_in(email)
        user_id = response.get_json()["user"]["id"]
        sid = auth.client.get("/auth/sessions").get_json()["sessions"][0]["id"]
    assert ("code_sent", {"email": email}) in calls
    assert ("user_created", {"user_id": user_id, "email": email}) in calls
    assert ("user_signed_in", {"user_id": user_id, "email": email, "method": "code",
                               "session_id": sid}) in calls
    with recorded(app, signals.user_created, signals.user_signed_in) as again:
        auth.client.post("/auth/logout", headers=auth.csrf_header())
        auth.client.post("/auth/request-otp", json={"email": email})
    assert again == []  # a refused resend (cooldown) signs nobody in
    # No code, link secret or token in any argument.
    code = auth.read_code_from_inbox(email)
    secret = auth.read_link_from_inbox(email).rsplit("#", 1)[1]
    token = response.get_json()["access_token"]
    for _name, arguments in calls:
        for value in map(str, arguments.values()):
            assert code not in value and secret not in value and token not in value


def test_ending_sessions_is_signalled_with_the_reason(
    auth: AuthActions, email: str, app: Flask
) -> None:
    auth.sign_in(email)
    sid = auth.client.get("/auth/sessions").get_json()["sessions"][0]["id"]
    with recorded(app, signals.session_ended) as calls:
        auth.client.post("/auth/logout", headers=auth.csrf_header())
    user_id = calls[0][1]["user_id"]
    assert calls == [("session_ended", {"user_id": user_id, "session_id": sid,
                                        "reason": "logout"})]


def test_passkeys_registered_and_deleted_are_signalled(
    auth: AuthActions, email: str, app: Flask
) -> None:
    auth.sign_in(email)
    with app.app_context():
        authenticator = SoftAuthenticator(settings.webauthn_rp_id, settings.webauthn_origins[0])
    with recorded(app, signals.passkey_registered, signals.passkey_deleted) as calls:
        options = auth.client.post("/auth/passkeys/register/options", headers=auth.csrf_header())
        created = auth.client.post(
            "/auth/passkeys/register",
            json={"credential": authenticator.create(options.get_json())},
            headers=auth.csrf_header(),
        ).get_json()
        auth.client.delete(f"/auth/passkeys/{created['id']}", headers=auth.csrf_header())
    assert [name for name, _ in calls] == ["passkey_registered", "passkey_deleted"]
    assert all(arguments["passkey_id"] == created["id"] for _, arguments in calls)


def test_a_failing_receiver_never_breaks_a_sign_in(
    auth: AuthActions, app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_sender: Flask, **_arguments: Any) -> None:
        raise RuntimeError("the host's hook is broken")

    signals.user_signed_in.connect(broken, sender=app)
    try:
        with caplog.at_level("ERROR", logger="flask_email_signin.signals"):
            auth.sign_in(new_email())
    finally:
        signals.user_signed_in.disconnect(broken, sender=app)
    assert any("user_signed_in receiver failed" in r.getMessage() for r in caplog.records)
