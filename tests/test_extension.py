"""EmailSignIn in a host app of its own: its db, model, JWTManager, Celery app and pages.

These hosts sign in with the development magic code, so no email is involved:
what is under test is the wiring of `init_app`, not the mail flow (tested elsewhere).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, create_access_token, get_jwt_identity, jwt_required
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.pool import NullPool

from flask_email_signin import EmailSignIn, UnsafeSettingError, UserMixin
from flask_email_signin.login_links import login_link_url
from flask_email_signin.tasks import SEND_LOGIN_CODE
from support import SUITE_JWT_SECRET_KEY, SUITE_SECRET_KEY, error_code, new_email

MAGIC = "246810"
ROOT = Path(__file__).resolve().parent.parent


def build_host(
    redis_url: str, tmp_path: Path, *, jwt: bool = True, before_init: Any = None, **config: Any
) -> Flask:
    """A host with its own factory pieces, and the extension bound through its public API."""
    app = Flask("host")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SUITE_SECRET_KEY,
        JWT_SECRET_KEY=SUITE_JWT_SECRET_KEY,
        JWT_TOKEN_LOCATION=["cookies", "headers"],
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}",
        SQLALCHEMY_ENGINE_OPTIONS={"poolclass": NullPool},
        OTP_REDIS_URL=f"{redis_url}/3",
        OTP_DEV_MAGIC_CODE=MAGIC,
        OTP_RATE_LIMIT_REQUEST="1000 per hour",
        OTP_RATE_LIMIT_VERIFY="1000 per hour",
    )
    app.config.update(config)
    db = SQLAlchemy()

    class Account(UserMixin, db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "accounts"

    db.init_app(app)
    manager = JWTManager(app) if jwt else None
    if before_init is not None:
        before_init(app, manager)
    celery = Celery("host", broker=f"{redis_url}/4")
    app.extensions["celery"] = celery
    EmailSignIn(app, db=db, user_model=Account)

    @app.errorhandler(404)
    def host_not_found(_error: Exception) -> tuple[str, int]:
        return "<h1>Host page not found</h1>", 404

    @app.get("/dashboard")
    @jwt_required()
    def dashboard() -> Any:
        return jsonify(user=get_jwt_identity())

    with app.app_context():
        db.create_all()
    return app


@pytest.fixture
def host(redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    yield build_host(redis_url, tmp_path)


def sign_in(client: Any, prefix: str = "/auth") -> dict[str, Any]:
    email = new_email()
    assert client.post(f"{prefix}/request-otp", json={"email": email}).status_code == 202
    response = client.post(f"{prefix}/verify-otp", json={"email": email, "otp": MAGIC})
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def test_logout_is_seen_by_the_hosts_own_jwt_manager_and_views(host: Flask) -> None:
    client = host.test_client(use_cookies=False)  # the bearer header alone
    token = sign_in(client)["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/dashboard", headers=bearer).status_code == 200
    assert client.get("/auth/me", headers=bearer).status_code == 200

    assert client.post("/auth/logout", headers=bearer).status_code == 200
    # The host's manager answers its own view in its own format...
    refused = client.get("/dashboard", headers=bearer)
    assert refused.status_code == 401 and "revoked" in refused.get_json()["msg"]
    # ...and ours in the envelope.
    assert error_code(client.get("/auth/me", headers=bearer)) == "token_revoked"


def test_tokens_without_a_session_are_refused_unless_the_host_vouches(
    redis_url: str, tmp_path: Path
) -> None:
    host = build_host(redis_url, tmp_path)
    with host.app_context():
        foreign = create_access_token(identity="42")
    assert host.test_client().get(
        "/dashboard", headers={"Authorization": f"Bearer {foreign}"}
    ).status_code == 401

    seen: list[str] = []

    def host_blocklist(app: Flask, manager: JWTManager) -> None:
        @manager.token_in_blocklist_loader
        def service_tokens_are_live(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
            seen.append(payload["sub"])
            return False

    (tmp_path / "vouched").mkdir()
    vouched = build_host(redis_url, tmp_path / "vouched", before_init=host_blocklist)
    client = vouched.test_client(use_cookies=False)
    with vouched.app_context():
        service = create_access_token(identity="service-1")
    assert client.get("/dashboard", headers={"Authorization": f"Bearer {service}"}).json == {
        "user": "service-1"
    }
    # Sessions of ours are still checked by us: the host's loader never sees them.
    token = sign_in(client)["access_token"]
    assert client.get("/dashboard", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert seen == ["service-1"]


def test_errors_are_enveloped_on_our_routes_only(host: Flask) -> None:
    client = host.test_client()
    page = client.get("/nowhere")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "Host page not found" in page.get_data(as_text=True)

    assert error_code(client.get("/auth/nowhere")) == "not_found"
    wrong_method = client.get("/auth/request-otp")
    assert error_code(wrong_method) == "method_not_allowed"
    assert "POST" in wrong_method.headers["Allow"]
    assert error_code(client.post("/auth/request-otp", data="x")) == "unsupported_media_type"


def test_a_host_without_a_jwt_manager_gets_one_answering_in_the_envelope(
    redis_url: str, tmp_path: Path
) -> None:
    host = build_host(redis_url, tmp_path, jwt=False)
    assert isinstance(host.extensions["flask-jwt-extended"], JWTManager)
    assert error_code(host.test_client().get("/dashboard")) == "token_missing"


def test_mounted_under_another_prefix_every_url_follows(redis_url: str, tmp_path: Path) -> None:
    host = build_host(
        redis_url, tmp_path, OTP_URL_PREFIX="/account", OTP_LINK_BASE_URL="https://example.org"
    )
    client = host.test_client()
    signed_in = client.post(
        "/account/verify-otp", json={"email": new_email(), "otp": MAGIC}
    )
    name = host.config["JWT_REFRESH_COOKIE_NAME"]
    refresh_cookie = [h for h in signed_in.headers.getlist("Set-Cookie")
                      if h.startswith(f"{name}=")]
    assert refresh_cookie and "Path=/account" in refresh_cookie[0]

    page = client.get("/account/login").get_data(as_text=True)
    assert 'data-api-base="/account"' in page and "/account/assets/signin.js" in page
    with client.get("/account/assets/signin.js") as script:
        assert script.status_code == 200
    assert client.get("/").status_code == 404  # the host's `/` stays the host's
    paths = client.get("/account/openapi.json").get_json()["paths"]
    assert paths and all(path.startswith("/account/") for path in paths)
    with host.app_context():
        link = login_link_url("a@example.org", "s" * 43)
    assert link is not None and link.startswith("https://example.org/account/link/")


def test_the_email_task_is_registered_on_the_hosts_celery_app(host: Flask) -> None:
    celery: Celery = host.extensions["celery"]
    assert SEND_LOGIN_CODE in celery.tasks
    assert host.extensions["email_signin"].celery is celery


def test_registering_twice_is_refused(host: Flask) -> None:
    with pytest.raises(RuntimeError, match="already registered"):
        EmailSignIn(host)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"JWT_TOKEN_LOCATION": ["headers"]}, "JWT_TOKEN_LOCATION"),
        ({"OTP_PRODUCTION": True, "SECRET_KEY": "short"}, "SECRET_KEY is shorter"),
        ({"OTP_PRODUCTION": True, "JWT_COOKIE_SECURE": False}, "JWT_COOKIE_SECURE"),
    ],
)
def test_unsafe_or_unworkable_settings_refuse_to_start(
    redis_url: str, tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    if config.get("OTP_PRODUCTION"):
        config = {"OTP_DEV_MAGIC_CODE": None, "JWT_COOKIE_SECURE": True,
                  "OTP_LINK_BASE_URL": "https://example.org", **config}
    with pytest.raises((RuntimeError, UnsafeSettingError), match=message):
        build_host(redis_url, tmp_path, **config)


def test_a_host_without_flask_sqlalchemy_is_told_what_to_do() -> None:
    app = Flask("bare")
    app.testing = True
    with pytest.raises(RuntimeError, match=r"db\.init_app"):
        EmailSignIn(app)


def test_importing_the_package_changes_nothing_in_the_process(tmp_path: Path) -> None:
    """No .env read, no signal receivers, no socket timeout: importing is side-effect free."""
    (tmp_path / ".env").write_text("EMAIL_SIGNIN_IMPORT_PROBE=loaded\n")
    script = textwrap.dedent(
        """
        import os, socket
        from celery import signals
        before = {name: len(getattr(signals, name).receivers or [])
                  for name in ("before_task_publish", "task_prerun", "task_postrun")}
        import flask_email_signin
        after = {name: len(getattr(signals, name).receivers or [])
                 for name in ("before_task_publish", "task_prerun", "task_postrun")}
        assert before == after, (before, after)
        assert socket.getdefaulttimeout() is None
        assert "EMAIL_SIGNIN_IMPORT_PROBE" not in os.environ
        print("clean")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "clean", result.stderr


def test_an_api_only_host_signs_in_without_pages_and_emails_carry_no_link(
    redis_url: str, tmp_path: Path
) -> None:
    host = build_host(redis_url, tmp_path, OTP_PAGES=False, JWT_TOKEN_LOCATION=["headers"])
    client = host.test_client()
    assert client.get("/auth/login").status_code == 404
    token = sign_in(client)["access_token"]
    assert client.get("/dashboard", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with host.app_context():
        assert login_link_url("a@example.org", "s" * 43) is None


def test_a_blocklist_loader_registered_after_init_app_fails_closed(
    redis_url: str, tmp_path: Path
) -> None:
    host = build_host(redis_url, tmp_path)
    token = sign_in(host.test_client(use_cookies=False))["access_token"]

    @host.extensions["flask-jwt-extended"].token_in_blocklist_loader
    def nothing_is_revoked(_header: dict[str, Any], _payload: dict[str, Any]) -> bool:
        return False

    host.testing = False  # answer as in production: a 500, not a raised exception
    refused = host.test_client().get("/dashboard", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 500


def test_every_window_of_a_limit_setting_is_enforced(redis_url: str, tmp_path: Path) -> None:
    host = build_host(
        redis_url, tmp_path, OTP_RATE_LIMIT_REQUEST="100 per minute; 2 per hour"
    )
    client = host.test_client()
    answers = [
        client.post("/auth/request-otp", json={"email": new_email()}) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert error_code(answers[2]) == "rate_limited"
    assert answers[2].get_json()["error"]["details"]["limit"] == "2 requests per hour"
    assert 0 < int(answers[2].headers["Retry-After"]) <= 3600


def test_the_email_task_is_redelivered_if_its_worker_dies(host: Flask) -> None:
    task = host.extensions["celery"].tasks[SEND_LOGIN_CODE]
    assert task.acks_late and task.reject_on_worker_lost


@pytest.mark.parametrize("allow_signup", [True, False])
def test_sign_in_statement_creates_stamps_or_refuses(
    redis_url: str, tmp_path: Path, allow_signup: bool
) -> None:
    """The one-statement sign-in: new, returning, deactivated and (invite-only) unknown users."""
    host = build_host(redis_url, tmp_path, OTP_ALLOW_SIGNUP=allow_signup)
    client = host.test_client(use_cookies=False)
    store = host.extensions["email_signin"].users
    returning, inactive, unknown = new_email(), new_email(), new_email()
    with host.app_context():
        store.create(returning)
        store.create(inactive, active=False)

    def verify(email: str) -> Any:
        return client.post("/auth/verify-otp", json={"email": email, "otp": MAGIC})

    first = verify(returning)
    assert first.status_code == 200 and first.get_json()["user"]["email"] == returning
    assert error_code(verify(inactive)) == "account_inactive"
    if allow_signup:
        created = verify(unknown)
        assert created.status_code == 200
        profile = client.get(
            "/auth/me", headers={"Authorization": f"Bearer {created.get_json()['access_token']}"}
        ).get_json()
        assert profile["email"] == unknown and profile["created_at"] == profile["last_login_at"]
    else:
        assert error_code(verify(unknown)) == "signup_closed"
    with host.app_context():
        stamped = store.find(returning)
        assert stamped is not None and stamped.last_login_at is not None
        assert store.find(inactive).last_login_at is None
        assert (store.find(unknown) is not None) is allow_signup
