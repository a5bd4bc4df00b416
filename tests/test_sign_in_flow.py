"""The whole flow: code by email, sign-in, profile, refresh, sign-out."""

from __future__ import annotations

from support import AuthActions, error_code


def test_sign_in_with_code_read_from_the_email(auth: AuthActions, email: str) -> None:
    response = auth.request_code(email)
    assert response.status_code == 202
    body = response.get_json()
    assert body["expires_in"] == 600 and body["resend_in"] == 60 and body["message"]

    message = auth.inbox.wait_for(email)[0]
    assert "sign-in code" in message["Subject"]
    assert message.get_body(preferencelist=("html",)) is not None

    response = auth.verify(email, auth.read_code_from_inbox(email))
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "bearer" and body["access_token"]
    assert body["user"]["email"] == email and isinstance(body["user"]["id"], int)

    me = auth.client.get("/auth/me")
    assert me.status_code == 200
    profile = me.get_json()
    assert profile["email"] == email and profile["last_login_at"] and profile["created_at"]


def test_bearer_header_works_without_cookies(auth: AuthActions, email: str) -> None:
    token = auth.sign_in(email).get_json()["access_token"]
    auth.client._cookies.clear()  # an API client keeps only the bearer token
    me = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.get_json()["email"] == email


def test_logout_revokes_access_and_refresh_tokens(auth: AuthActions, email: str) -> None:
    token = auth.sign_in(email).get_json()["access_token"]
    refresh_cookie = auth.client.get_cookie("refresh_token", path="/auth")
    refresh_csrf = auth.csrf_header("refresh")
    assert refresh_cookie is not None

    response = auth.client.post("/auth/logout", headers=auth.csrf_header())
    assert response.status_code == 200
    # The cookies are cleared...
    assert auth.client.get_cookie("access_token") is None
    assert error_code(auth.client.get("/auth/me")) == "token_missing"
    # ...and the tokens themselves are dead, even replayed by hand.
    me = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401 and error_code(me) == "token_revoked"
    auth.client.set_cookie("refresh_token", refresh_cookie.value, path="/auth")
    refreshed = auth.client.post("/auth/refresh", headers=refresh_csrf)
    assert refreshed.status_code == 401 and error_code(refreshed) == "token_revoked"


def test_logout_with_only_a_bearer_token(auth: AuthActions, email: str) -> None:
    token = auth.sign_in(email).get_json()["access_token"]
    auth.client._cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    assert auth.client.post("/auth/logout", headers=bearer).status_code == 200
    assert auth.client.get("/auth/me", headers=bearer).status_code == 401


def test_refresh_issues_a_new_access_token(auth: AuthActions, email: str) -> None:
    first = auth.sign_in(email).get_json()["access_token"]
    response = auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] and body["access_token"] != first
    assert auth.client.get_cookie("access_token").value == body["access_token"]
    me = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200


def test_first_sign_in_creates_the_user_and_later_ones_update_last_login(
    auth: AuthActions, email: str
) -> None:
    first = auth.sign_in(email).get_json()["user"]
    profile_before = auth.client.get("/auth/me").get_json()
    auth.client.post("/auth/logout", headers=auth.csrf_header())

    # Second sign-in: wait out the resend cooldown by asking the store, not the clock.
    auth.app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 0
    try:
        assert auth.request_code(email).status_code == 202
        second = auth.verify(email, auth.read_code_from_inbox(email, count=2)).get_json()["user"]
    finally:
        auth.app.config["OTP_RESEND_COOLDOWN_SECONDS"] = 60
    assert second["id"] == first["id"]
    profile_after = auth.client.get("/auth/me").get_json()
    assert profile_after["created_at"] == profile_before["created_at"]
    assert profile_after["last_login_at"] > profile_before["last_login_at"]


def test_revocation_is_seen_by_another_app_instance(
    auth: AuthActions, email: str, suite_config: type
) -> None:
    from app import create_app

    token = auth.sign_in(email).get_json()["access_token"]
    other = create_app(suite_config).test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert other.get("/auth/me", headers=bearer).status_code == 200
    assert auth.client.post("/auth/logout", headers=auth.csrf_header()).status_code == 200
    refused = other.get("/auth/me", headers=bearer)
    assert refused.status_code == 401 and error_code(refused) == "token_revoked"
