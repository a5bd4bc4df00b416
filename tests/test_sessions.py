"""Sessions: list, revoke one, revoke all; the per-request check's cost."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from app.models import User
from flask_email_signin import session_store as store
from support import AuthActions, error_code, new_email


def second_device(auth: AuthActions, email: str, user_agent: str = "second-device/1.0") -> Any:
    """Sign the same email in from another client; returns (client, bearer headers)."""
    client = auth.app.test_client()
    other = AuthActions(client, auth.inbox, auth.app)
    already = len(auth.inbox.to(email))
    auth.app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 0
    try:
        assert other.request_code(email).status_code == 202
    finally:
        auth.app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 60
    code = other.read_code_from_inbox(email, count=already + 1)
    response = client.post(
        "/auth/verify-otp", json={"email": email, "otp": code}, headers={"User-Agent": user_agent}
    )
    assert response.status_code == 200, response.get_json()
    return client, {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def sessions_of(client: FlaskClient, **kwargs: Any) -> list[dict[str, Any]]:
    response = client.get("/auth/sessions", **kwargs)
    assert response.status_code == 200, response.get_json()
    return list(response.get_json()["sessions"])


def test_sessions_are_listed_with_the_current_one_marked(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    other_client, other_bearer = second_device(auth, email)

    mine = sessions_of(auth.client)
    assert len(mine) == 2
    assert [s["current"] for s in mine].count(True) == 1
    for session in mine:
        assert set(session) == {
            "id", "created_at", "last_used_at", "ip", "user_agent", "method", "current"
        }
        assert session["ip"] == "127.0.0.1" and session["method"] == "code"
    agents = {s["user_agent"] for s in mine}
    assert "second-device/1.0" in agents

    theirs = sessions_of(other_client, headers=other_bearer)
    current_here = next(s["id"] for s in mine if s["current"])
    current_there = next(s["id"] for s in theirs if s["current"])
    assert current_here != current_there
    assert {s["id"] for s in theirs} == {s["id"] for s in mine}


def test_revoking_another_session_ends_it_at_the_next_request(
    auth: AuthActions, email: str
) -> None:
    auth.sign_in(email)
    other_client, other_bearer = second_device(auth, email)
    listed = sessions_of(other_client, headers=other_bearer)
    other_id = next(s["id"] for s in listed if s["current"])
    assert other_client.get("/auth/me", headers=other_bearer).status_code == 200

    response = auth.client.delete(f"/auth/sessions/{other_id}", headers=auth.csrf_header())
    assert response.status_code == 200
    assert response.get_json() == {"message": "Session ended.", "current": False}

    refused = other_client.get("/auth/me", headers=other_bearer)
    assert refused.status_code == 401 and error_code(refused) == "token_revoked"
    assert auth.client.get("/auth/me").status_code == 200  # this one lives on
    assert [s["id"] for s in sessions_of(auth.client)] != [other_id]
    assert other_id not in {s["id"] for s in sessions_of(auth.client)}


def test_revoking_the_current_session_signs_this_client_out(
    auth: AuthActions, email: str
) -> None:
    token = auth.sign_in(email).get_json()["access_token"]
    current = next(s["id"] for s in sessions_of(auth.client) if s["current"])
    response = auth.client.delete(f"/auth/sessions/{current}", headers=auth.csrf_header())
    assert response.status_code == 200 and response.get_json()["current"] is True
    assert auth.client.get_cookie("access_token") is None
    refused = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and error_code(refused) == "token_revoked"


@pytest.mark.parametrize("sid", ["no-such-session", "x" * 300, "%7B%7D", "*"])
def test_unknown_session_ids_answer_404_json(auth: AuthActions, email: str, sid: str) -> None:
    auth.sign_in(email)
    response = auth.client.delete(f"/auth/sessions/{sid}", headers=auth.csrf_header())
    assert response.status_code == 404 and error_code(response) == "session_not_found"
    assert auth.client.get("/auth/me").status_code == 200


def test_another_users_session_cannot_be_revoked(auth: AuthActions, email: str) -> None:
    victim_client = auth.app.test_client()
    victim = AuthActions(victim_client, auth.inbox, auth.app)
    victim_email = new_email("victim")
    victim.sign_in(victim_email)
    victim_sid = sessions_of(victim_client)[0]["id"]

    auth.sign_in(email)
    response = auth.client.delete(f"/auth/sessions/{victim_sid}", headers=auth.csrf_header())
    assert response.status_code == 404 and error_code(response) == "session_not_found"
    assert victim_client.get("/auth/me").status_code == 200


def test_logout_all_ends_every_session(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    other_client, other_bearer = second_device(auth, email)
    response = auth.client.post("/auth/logout-all", headers=auth.csrf_header())
    assert response.status_code == 200 and response.get_json()["ended"] == 2
    assert auth.client.get_cookie("access_token") is None
    assert error_code(other_client.get("/auth/me", headers=other_bearer)) == "token_revoked"


def test_logout_all_can_keep_the_current_session(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    other_client, other_bearer = second_device(auth, email)
    response = auth.client.post(
        "/auth/logout-all", json={"keep_current": True}, headers=auth.csrf_header()
    )
    assert response.status_code == 200 and response.get_json()["ended"] == 1
    assert auth.client.get("/auth/me").status_code == 200
    assert error_code(other_client.get("/auth/me", headers=other_bearer)) == "token_revoked"
    assert len(sessions_of(auth.client)) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [({"keep_current": "perhaps"}, 422), ({"everything": True}, 422), ([], 422)],
)
def test_logout_all_refuses_bad_bodies(
    auth: AuthActions, email: str, body: Any, status: int
) -> None:
    auth.sign_in(email)
    response = auth.client.post("/auth/logout-all", json=body, headers=auth.csrf_header())
    assert response.status_code == status and error_code(response) == "validation_failed"
    assert auth.client.get("/auth/me").status_code == 200  # nothing was ended


def test_session_endpoints_need_a_signed_in_user(client: FlaskClient) -> None:
    for method, path in (
        ("get", "/auth/sessions"),
        ("delete", "/auth/sessions/abc"),
        ("post", "/auth/logout-all"),
    ):
        response = getattr(client, method)(path)
        assert response.status_code == 401 and error_code(response) == "token_missing"


def user_id_of(app: Flask, email: str) -> str:
    with app.app_context():
        return str(db.session.scalar(sa.select(User.id).where(User.email == email)))


def test_last_use_is_stamped_by_the_per_request_check(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    sid = sessions_of(auth.client)[0]["id"]
    key = store.session_key(user_id_of(auth.app, email), sid)
    redis_client = auth.app.extensions["email_signin"].redis
    redis_client.hset(key, "l", 1_000)  # pretend the last use was long ago
    assert auth.client.get("/auth/me").status_code == 200
    assert int(redis_client.hget(key, "l")) > 1_000
    assert not sessions_of(auth.client)[0]["last_used_at"].startswith("1970")


def test_expired_session_ids_are_pruned_from_the_index(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    index = store.session_index_key(user_id_of(auth.app, email))
    redis_client = auth.app.extensions["email_signin"].redis
    redis_client.sadd(index, "long-gone")
    assert "long-gone" not in {s["id"] for s in sessions_of(auth.client)}
    assert not redis_client.sismember(index, "long-gone")
