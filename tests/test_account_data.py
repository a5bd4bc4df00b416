"""Export, deletion (self-service and by an operator) and the host's before_user_created."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app.devtools.inbox import Inbox
from flask_email_signin import SignupRefused, signals
from flask_email_signin.codes import email_tag
from support import AuthActions, error_code, new_email


def redis_keys_of(app: Flask, user_id: int, email: str) -> list[bytes]:
    tag = email_tag(email)
    client = app.extensions["email_signin"].redis
    return [key for key in client.scan_iter(count=1000)
            if tag.encode() in key or f"{{u{user_id}}}".encode() in key]


def user_rows(app: Flask, user_id: int) -> int:
    with app.app_context():
        db = app.extensions["sqlalchemy"]
        return int(db.session.execute(
            sa.text("SELECT count(*) FROM users WHERE id = :id"), {"id": user_id}
        ).scalar_one())


def events(app: Flask, **filters: Any) -> list[Any]:
    with app.app_context():
        audit_log = app.extensions["email_signin"].audit
        audit_log.flush()
        return audit_log.store.events(limit=None, **filters)


def test_the_export_holds_account_sessions_and_events(auth: AuthActions, email: str) -> None:
    user_id = auth.sign_in(email).get_json()["user"]["id"]
    response = auth.client.get("/auth/me/export")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment")
    document = response.get_json()
    assert document["account"]["id"] == user_id and document["account"]["email"] == email
    assert len(document["sessions"]) == 1 and document["sessions"][0]["method"] == "code"
    assert document["passkeys"] == []
    assert {"code.requested", "code.verified", "session.started"} <= {
        event["event"] for event in document["audit_events"]
    }
    json.dumps(document)  # plain JSON, nothing left as a Python object


def test_deleting_the_account_leaves_no_row_and_no_redis_key(
    auth: AuthActions, email: str, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_in = auth.sign_in(email).get_json()
    user_id, token = signed_in["user"]["id"], signed_in["access_token"]
    auth.client.post("/auth/email-change", json={"email": new_email()},
                     headers=auth.csrf_header())  # pending state of its own in Redis
    assert redis_keys_of(app, user_id, email) != []
    deleted_signals: list[dict[str, Any]] = []

    def on_delete(_app: Flask, **arguments: Any) -> None:
        deleted_signals.append(arguments)

    monkeypatch.setitem(app.config, "OTP_FRESH_LOGIN_SECONDS", 0)
    stale = auth.client.delete("/auth/me", headers=auth.csrf_header())
    assert error_code(stale) == "fresh_login_required" and user_rows(app, user_id) == 1
    monkeypatch.setitem(app.config, "OTP_FRESH_LOGIN_SECONDS", 300)

    signals.user_deleted.connect(on_delete, sender=app)
    try:
        gone = auth.client.delete("/auth/me", headers=auth.csrf_header())
    finally:
        signals.user_deleted.disconnect(on_delete, sender=app)
    assert gone.status_code == 200, gone.get_json()
    assert deleted_signals == [{"user_id": user_id, "email": email, "by": "user"}]
    assert user_rows(app, user_id) == 0
    assert redis_keys_of(app, user_id, email) == []
    # The old token is refused at once (its session is gone).
    replay = app.test_client().get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert replay.status_code == 401
    # The events stay, unlinked from the person.
    assert events(app, email_tag=email_tag(email)) == []
    kept = [e for e in events(app, user_id=user_id)]
    assert [e.event for e in kept] == ["user.deleted"]
    pseudonymised = [e for e in events(app, event="session.started")
                     if (e.email_tag or "").startswith("deleted:")]
    assert pseudonymised and all(e.user_id is None for e in pseudonymised)
    assert all(e.ip in ("127.0.0.0/24", "") for e in pseudonymised)


def test_operators_export_and_delete_from_the_cli(
    auth: AuthActions, email: str, app: Flask
) -> None:
    user_id = auth.sign_in(email).get_json()["user"]["id"]
    runner = app.test_cli_runner()
    exported = runner.invoke(args=["users", "export", email])
    assert exported.exit_code == 0 and json.loads(exported.output)["account"]["id"] == user_id
    refused = runner.invoke(args=["users", "delete", email], input="n\n")
    assert refused.exit_code == 1 and user_rows(app, user_id) == 1
    deleted = runner.invoke(args=["users", "delete", email, "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert user_rows(app, user_id) == 0 and redis_keys_of(app, user_id, email) == []
    assert auth.client.get("/auth/me").status_code == 401
    assert [e.detail["by"] for e in events(app, user_id=user_id, event="user.deleted")] == [
        "operator"
    ]
    missing = runner.invoke(args=["users", "delete", email, "--yes"])
    assert missing.exit_code == 1 and "No user" in missing.output


def test_a_host_refuses_a_sign_up_with_its_own_message(
    auth: AuthActions, app: Flask, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)
    existing = new_email("existing")
    auth.sign_in(existing)
    asked: list[str] = []

    def only_example_org(address: str) -> None:
        asked.append(address)
        if not address.endswith("@example.org"):
            raise SignupRefused("Use your example.org address to join.")

    hooks = app.extensions["email_signin"].before_user_created
    hooks.append(only_example_org)
    try:
        refused_email = new_email("outsider")
        auth.request_code(refused_email)
        refused = auth.verify(refused_email, auth.read_code_from_inbox(refused_email))
        other = AuthActions(app.test_client(), inbox, app)
        other.request_code(existing)
        returning = other.verify(existing, other.read_code_from_inbox(existing, count=2))
    finally:
        hooks.remove(only_example_org)
    assert refused.status_code == 403 and error_code(refused) == "signup_refused"
    assert refused.get_json()["error"]["message"] == "Use your example.org address to join."
    assert returning.status_code == 200
    assert asked == [refused_email]  # existing accounts are not asked about
    refusals = events(app, email_tag=email_tag(refused_email), event="signup.refused")
    assert [e.detail for e in refusals] == [{"by": "host"}]
