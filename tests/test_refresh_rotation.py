"""Refresh tokens rotate; a retired one coming back ends the whole session."""

from __future__ import annotations

import jwt as pyjwt
import sqlalchemy as sa

from app.extensions import db
from app.models import User
from support import AuthActions, error_code


def refresh_cookie(auth: AuthActions) -> str:
    cookie = auth.client.get_cookie("refresh_token", path="/auth")
    assert cookie is not None
    return cookie.value


def refresh(auth: AuthActions) -> object:
    return auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh"))


def claims(token: str) -> dict[str, object]:
    return dict(pyjwt.decode(token, options={"verify_signature": False}))


def test_each_refresh_returns_a_new_refresh_token_for_the_same_session(
    auth: AuthActions, email: str
) -> None:
    auth.sign_in(email)
    first = refresh_cookie(auth)
    response = refresh(auth)
    assert response.status_code == 200
    second = refresh_cookie(auth)
    assert second != first
    assert claims(second)["sid"] == claims(first)["sid"]
    assert claims(second)["jti"] != claims(first)["jti"]
    # The session ends when it would have: rotation does not extend it.
    assert claims(second)["exp"] == claims(first)["exp"]
    # The rotated token works in turn, and so does the access token it brought.
    assert refresh(auth).status_code == 200
    assert auth.client.get("/auth/me").status_code == 200


def test_a_reused_refresh_token_ends_the_whole_session(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    stolen, stolen_csrf = refresh_cookie(auth), auth.csrf_header("refresh")
    assert refresh(auth).status_code == 200  # the legitimate client rotates
    access = auth.client.get_cookie("access_token").value
    current_refresh, current_csrf = refresh_cookie(auth), auth.csrf_header("refresh")

    # The thief replays the retired token.
    auth.client.set_cookie("refresh_token", stolen, path="/auth")
    replay = auth.client.post("/auth/refresh", headers=stolen_csrf)
    assert replay.status_code == 401 and error_code(replay) == "refresh_token_reused"

    # Everything of that session is dead now, the legitimate tokens included.
    me = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 401 and error_code(me) == "token_revoked"
    auth.client.set_cookie("refresh_token", current_refresh, path="/auth")
    again = auth.client.post("/auth/refresh", headers=current_csrf)
    assert again.status_code == 401 and error_code(again) == "token_revoked"


def test_refresh_picks_up_role_changes(auth: AuthActions, email: str) -> None:
    first_access = auth.sign_in(email).get_json()["access_token"]
    assert claims(first_access)["roles"] == []
    with auth.app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        user.grant_role("auditor")
        db.session.commit()
    body = refresh(auth).get_json()
    assert claims(body["access_token"])["roles"] == ["auditor"]


def test_refresh_of_a_deactivated_user_is_refused_and_ends_the_session(
    auth: AuthActions, email: str
) -> None:
    auth.sign_in(email)
    with auth.app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        user.is_active = False  # behind the CLI's back: sessions left running
        db.session.commit()
    response = refresh(auth)
    assert response.status_code == 403 and error_code(response) == "account_inactive"
    assert error_code(auth.client.get("/auth/me")) == "token_revoked"
