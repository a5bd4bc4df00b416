"""Roles: the `roles` claim, `role_required` on host views, the users.roles migration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask_migrate
import jwt as pyjwt
import pytest
import sqlalchemy as sa
from flask import Flask, jsonify
from flask.testing import FlaskClient
from flask_jwt_extended import get_jwt_identity, jwt_required

from app import create_app
from app.extensions import db
from app.models import User
from flask_email_signin import role_required
from support import error_code, make_config, new_email, redis_monitor

MAGIC = "000000"


@pytest.fixture(scope="module")
def host_app(redis_url: str, database_url: str, inbox: Any, app: Flask) -> Iterator[Flask]:
    """A host app with its own views, sharing the suite's servers (schema migrated by `app`)."""
    host = create_app(make_config(redis_url, database_url, inbox.port, OTP_DEV_MAGIC_CODE=MAGIC))

    @host.get("/admin/report")
    @role_required("admin")
    def admin_report() -> Any:
        return jsonify(report="for admins", user=get_jwt_identity())

    @host.get("/staff")
    @role_required("admin", "support")
    def staff() -> Any:
        return jsonify(ok=True)

    @host.get("/notes")
    @jwt_required()
    def notes() -> Any:
        return jsonify(owner=get_jwt_identity())

    yield host
    host.extensions["email_signin"].redis.close()


def set_roles(app: Flask, email: str, roles: list[str]) -> None:
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        if user is None:
            user = User(email=email)
            db.session.add(user)
        user.roles = roles
        db.session.commit()


def sign_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/auth/verify-otp", json={"email": email, "otp": MAGIC})
    assert response.status_code == 200, response.get_json()
    return client


def test_access_tokens_carry_the_users_roles(host_app: Flask) -> None:
    email = new_email("admin")
    set_roles(host_app, email, ["admin", "billing"])
    client = sign_in(host_app, email)
    token = client.get_cookie("access_token").value
    assert pyjwt.decode(token, options={"verify_signature": False})["roles"] == [
        "admin",
        "billing",
    ]
    assert client.get("/auth/me").get_json()["roles"] == ["admin", "billing"]


def test_role_required_lets_holders_in(host_app: Flask) -> None:
    email = new_email("admin")
    set_roles(host_app, email, ["admin"])
    client = sign_in(host_app, email)
    response = client.get("/admin/report")
    assert response.status_code == 200 and response.get_json()["report"] == "for admins"


@pytest.mark.parametrize(("roles", "status"), [([], 403), (["support"], 200), (["admin"], 200)])
def test_any_of_several_roles_is_enough(host_app: Flask, roles: list[str], status: int) -> None:
    email = new_email("staff")
    set_roles(host_app, email, roles)
    assert sign_in(host_app, email).get("/staff").status_code == status


def test_role_required_refuses_others_with_json_403(host_app: Flask) -> None:
    client = sign_in(host_app, new_email("plain"))
    response = client.get("/admin/report")
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert response.get_json()["error"]["details"] == {"required_roles": ["admin"]}


def test_role_required_refuses_anonymous_and_revoked_tokens(host_app: Flask) -> None:
    anonymous = host_app.test_client().get("/admin/report")
    assert anonymous.status_code == 401 and error_code(anonymous) == "token_missing"

    email = new_email("admin")
    set_roles(host_app, email, ["admin"])
    client = sign_in(host_app, email)
    token = client.get_cookie("access_token").value
    csrf = {"X-CSRF-TOKEN": client.get_cookie("csrf_access_token").value}
    assert client.post("/auth/logout", headers=csrf).status_code == 200
    revoked = client.get("/admin/report", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401 and error_code(revoked) == "token_revoked"


def test_a_forged_roles_claim_is_refused(host_app: Flask) -> None:
    client = sign_in(host_app, new_email("plain"))
    token = client.get_cookie("access_token").value
    claims = pyjwt.decode(token, options={"verify_signature": False})
    forged = pyjwt.encode({**claims, "roles": ["admin"]}, "not-the-key" * 4, algorithm="HS256")
    response = host_app.test_client().get(
        "/admin/report", headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401 and error_code(response) == "token_invalid"


@pytest.mark.parametrize("roles", [(), ("Admin",), ("admin", "no spaces")])
def test_role_required_refuses_bad_role_names_at_import_time(roles: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="role names"):
        role_required(*roles)


@contextmanager
def counting(app: Flask) -> Iterator[dict[str, int]]:
    """Round trips the server answered for the state store (MONITOR), and SQL statements."""
    counts = {"redis": 0, "sql": 0}
    url = app.config["OTP_REDIS_URL"]

    def on_sql(*_args: Any) -> None:
        counts["sql"] += 1

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", on_sql)
    try:
        with redis_monitor(url) as commands:
            yield counts
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_sql)
    state_db = int(url.rsplit("/", 1)[1])
    # Commands a Lua script runs inside the server show as client "lua": not round trips.
    counts["redis"] = sum(
        1 for c in commands if c["db"] == state_db and c["client_address"] != "lua"
    )


@pytest.mark.parametrize("path", ["/admin/report", "/notes"])
def test_a_protected_request_costs_one_redis_round_trip_and_no_query(
    host_app: Flask, path: str
) -> None:
    email = new_email("admin")
    set_roles(host_app, email, ["admin"])
    client = sign_in(host_app, email)
    assert client.get(path).status_code == 200  # the check's script is loaded now
    with counting(host_app) as counts:
        assert client.get(path).status_code == 200
    assert counts == {"redis": 1, "sql": 0}


def test_migration_0002_adds_roles_to_existing_users(tmp_path: Path, suite_config: type) -> None:
    """On a fresh database: rows made before 0002 get an empty role list; downgrade works."""
    url = f"sqlite:///{tmp_path / 'migrate.db'}"
    config = type("MigrationConfig", (suite_config,), {"SQLALCHEMY_DATABASE_URI": url})
    fresh = create_app(config)
    with fresh.app_context():
        flask_migrate.upgrade(revision="0001")
        db.session.execute(
            sa.text("INSERT INTO users (email, created_at, is_active) VALUES (:e, :t, :a)"),
            {"e": "old@example.com", "t": "2026-01-01 00:00:00", "a": True},
        )
        db.session.commit()
        flask_migrate.upgrade(revision="0002")
        roles = db.session.execute(sa.text("SELECT roles FROM users")).scalar()
        assert json.loads(roles) == []
        flask_migrate.upgrade()  # the model's later columns too
        user = db.session.scalar(sa.select(User).where(User.email == "old@example.com"))
        assert user is not None and user.roles == [] and user.locale is None
        user.grant_role("admin")
        db.session.commit()
        db.session.expire_all()
        assert db.session.scalar(sa.select(User.roles)) == ["admin"]
        db.session.remove()
        flask_migrate.downgrade(revision="0001")
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("users")}
        assert "roles" not in columns
        db.engine.dispose()
    fresh.extensions["email_signin"].redis.close()
