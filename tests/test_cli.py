"""The admin CLI: `flask users ...` and `flask mail send-test`, run with Flask's CLI runner."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskCliRunner

from app import create_app
from app.devtools.inbox import Inbox, plain_text
from app.devtools.redis_server import free_port
from app.extensions import db
from app.models import User
from support import AuthActions, error_code, make_config, new_email


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """Runs commands inside the suite's app, as `flask ...` would."""
    return app.test_cli_runner()


def invoke(runner: FlaskCliRunner, *args: str) -> Any:
    return runner.invoke(args=list(args), catch_exceptions=False)


def user(app: Flask, email: str) -> User | None:
    with app.app_context():
        found = db.session.scalar(sa.select(User).where(User.email == email))
        if found is not None:
            db.session.expunge(found)
        return found


COMMANDS = [
    ("users",), ("users", "list"), ("users", "show"), ("users", "create"),
    ("users", "deactivate"), ("users", "activate"), ("users", "grant-role"),
    ("users", "revoke-role"), ("users", "sessions"), ("users", "logout-all"),
    ("mail",), ("mail", "send-test"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(runner: FlaskCliRunner, command: tuple[str, ...]) -> None:
    result = invoke(runner, *command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 15, result.output  # a sentence, not an empty docstring


def test_create_show_and_list(runner: FlaskCliRunner, app: Flask) -> None:
    email = new_email("created")
    result = invoke(runner, "users", "create", email.upper(), "--role", "admin", "--role", "ops")
    assert result.exit_code == 0 and "Created user" in result.output
    created = user(app, email)  # stored normalised (lower-cased)
    assert created is not None and created.roles == ["admin", "ops"] and created.is_active

    shown = invoke(runner, "users", "show", email)
    assert shown.exit_code == 0
    assert f"email:         {email}" in shown.output and "admin, ops" in shown.output
    assert "live sessions: 0" in shown.output

    listed = invoke(runner, "users", "list", "--role", "ops")
    assert listed.exit_code == 0 and email in listed.output
    assert new_email("absent") not in listed.output

    again = invoke(runner, "users", "create", email)
    assert again.exit_code == 1 and "already exists" in again.output


@pytest.mark.parametrize(
    "args",
    [
        ("users", "create", "not-an-email"),
        ("users", "create", "x@example.com", "--role", "Bad Role"),
        ("users", "show", "nobody-here@example.com"),
        ("users", "grant-role", "nobody-here@example.com", "admin"),
    ],
)
def test_bad_input_is_a_clear_error(runner: FlaskCliRunner, args: tuple[str, ...]) -> None:
    result = invoke(runner, *args)
    assert result.exit_code in {1, 2}
    assert "Error" in result.output and "Traceback" not in result.output


def test_list_filters_by_state(runner: FlaskCliRunner) -> None:
    active, inactive = new_email("on"), new_email("off")
    invoke(runner, "users", "create", active)
    invoke(runner, "users", "create", inactive, "--inactive")
    only_inactive = invoke(runner, "users", "list", "--inactive").output
    assert inactive in only_inactive and active not in only_inactive
    only_active = invoke(runner, "users", "list", "--active").output
    assert active in only_active and inactive not in only_active


def test_grant_and_revoke_role(runner: FlaskCliRunner, app: Flask) -> None:
    email = new_email("roles")
    invoke(runner, "users", "create", email)
    assert "Granted admin" in invoke(runner, "users", "grant-role", email, "admin").output
    assert "already has" in invoke(runner, "users", "grant-role", email, "admin").output
    assert user(app, email).roles == ["admin"]  # type: ignore[union-attr]
    revoked = invoke(runner, "users", "revoke-role", email, "admin")
    assert revoked.exit_code == 0 and "Revoked admin" in revoked.output
    assert user(app, email).roles == []  # type: ignore[union-attr]
    assert "does not have" in invoke(runner, "users", "revoke-role", email, "admin").output


def test_revoke_role_can_end_sessions_at_once(
    runner: FlaskCliRunner, auth: AuthActions, email: str
) -> None:
    auth.sign_in(email)
    invoke(runner, "users", "grant-role", email, "admin")
    result = invoke(runner, "users", "revoke-role", email, "admin", "--end-sessions")
    assert "Ended 1 session(s)" in result.output
    assert error_code(auth.client.get("/auth/me")) == "token_revoked"


def test_sessions_and_logout_all(runner: FlaskCliRunner, auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    listed = invoke(runner, "users", "sessions", email)
    assert listed.exit_code == 0 and "1 live session(s)" in listed.output
    assert "127.0.0.1" in listed.output
    ended = invoke(runner, "users", "logout-all", email)
    assert ended.exit_code == 0 and "Ended 1 session(s)" in ended.output
    assert error_code(auth.client.get("/auth/me")) == "token_revoked"
    assert "0 live session(s)" in invoke(runner, "users", "sessions", email).output


def test_deactivate_ends_sessions_and_refuses_sign_in_until_activated(
    runner: FlaskCliRunner, auth: AuthActions, email: str
) -> None:
    auth.sign_in(email)
    result = invoke(runner, "users", "deactivate", email)
    assert result.exit_code == 0 and "ended 1 session(s)" in result.output
    assert error_code(auth.client.get("/auth/me")) == "token_revoked"

    auth.app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 0
    try:
        auth.request_code(email)
        code = auth.read_code_from_inbox(email, count=2)
        refused = auth.verify(email, code)
        assert refused.status_code == 403 and error_code(refused) == "account_inactive"

        assert invoke(runner, "users", "activate", email).exit_code == 0
        auth.request_code(email)
        code = auth.read_code_from_inbox(email, count=3)
    finally:
        auth.app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 60
    assert auth.verify(email, code).status_code == 200


def test_mail_send_test_delivers_through_the_configured_server(
    runner: FlaskCliRunner, inbox: Inbox
) -> None:
    address = new_email("smtp-check")
    result = invoke(runner, "mail", "send-test", address)
    assert result.exit_code == 0 and "Sent" in result.output, result.output
    message = inbox.wait_for(address)[0]
    assert "mail settings test" in message["Subject"]
    assert "can send email" in plain_text(message)


@pytest.fixture
def mail_app(redis_url: str, database_url: str, inbox: Inbox) -> Iterator[Any]:
    """Builds an app with other mail settings (the suite's app and worker stay untouched)."""
    made: list[Flask] = []

    def build(**mail_settings: Any) -> Flask:
        made.append(create_app(make_config(redis_url, database_url, inbox.port, **mail_settings)))
        return made[-1]

    yield build
    for built in made:
        built.extensions["email_signin"].redis.close()


def test_mail_send_test_diagnoses_a_dead_port(mail_app: Any) -> None:
    dead = free_port()
    result = mail_app(MAIL_PORT=dead).test_cli_runner().invoke(
        args=["mail", "send-test", new_email("x")]
    )
    assert result.exit_code == 1
    assert "Connection refused" in result.output and f":{dead}" in result.output
    assert "MAIL_PORT" in result.output and "Traceback" not in result.output


def test_mail_send_test_diagnoses_missing_starttls(mail_app: Any) -> None:
    # The suite's SMTP server offers no STARTTLS: exactly the mistake being diagnosed.
    result = mail_app(MAIL_USE_TLS=True).test_cli_runner().invoke(
        args=["mail", "send-test", new_email("x")]
    )
    assert result.exit_code == 1
    assert "does not offer STARTTLS" in result.output and "MAIL_USE_TLS" in result.output


def test_mail_send_test_never_prints_the_password(mail_app: Any) -> None:
    app = mail_app(MAIL_USERNAME="mailer", MAIL_PASSWORD="hunter2-very-secret")
    result = app.test_cli_runner().invoke(args=["mail", "send-test", new_email("x")])
    # The suite's server offers no AUTH: the login step fails and is explained.
    assert result.exit_code == 1 and "offers no login" in result.output
    assert "hunter2-very-secret" not in result.output


def test_mail_send_test_diagnoses_a_server_that_never_answers(mail_app: Any) -> None:
    """A server that accepts the connection and never greets (a firewall, the wrong TLS mode):
    smtplib calls it a closed connection; the command says it timed out, and what to check."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    acceptor = threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True)
    acceptor.start()
    try:
        port = silent.getsockname()[1]
        app = mail_app(MAIL_PORT=port, OTP_MAIL_TIMEOUT_SECONDS=1)
        result = app.test_cli_runner().invoke(args=["mail", "send-test", new_email("x")])
    finally:
        acceptor.join(timeout=10)
        for connection in held:
            connection.close()
        silent.close()
    assert held, "the command never connected"
    assert result.exit_code == 1
    assert "Timed out after OTP_MAIL_TIMEOUT_SECONDS=1" in result.output
    assert f"127.0.0.1:{port}" in result.output and "MAIL_PORT" in result.output
    assert "closed the connection" not in result.output
