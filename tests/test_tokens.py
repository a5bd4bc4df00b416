"""Cookies, CSRF, token types and malformed tokens."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token

from support import AuthActions, error_code


def cookie_headers(response: object) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):  # type: ignore[attr-defined]
        found[header.split("=", 1)[0]] = header
    return found


def test_cookie_flags(auth: AuthActions, email: str) -> None:
    cookies = cookie_headers(auth.sign_in(email))
    access, refresh = cookies["access_token"], cookies["refresh_token"]
    for header in (access, refresh):
        assert "HttpOnly" in header and "SameSite=Lax" in header
        assert "Secure" not in header  # development/testing: plain http on localhost
    assert "Path=/;" in access or access.endswith("Path=/")
    assert "Path=/auth" in refresh
    for name in ("csrf_access_token", "csrf_refresh_token"):
        assert "HttpOnly" not in cookies[name]  # scripts must read them to echo them


def test_cookie_request_without_csrf_header_is_refused(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    response = auth.client.post("/auth/logout")
    assert response.status_code == 401 and error_code(response) == "csrf_failed"
    wrong = auth.client.post("/auth/logout", headers={"X-CSRF-TOKEN": "not-the-token"})
    assert wrong.status_code == 401 and error_code(wrong) == "csrf_failed"
    assert auth.client.get("/auth/me").status_code == 200  # still signed in


def test_refresh_without_csrf_header_is_refused(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    response = auth.client.post("/auth/refresh")
    assert response.status_code == 401 and error_code(response) == "csrf_failed"


def test_a_refresh_token_is_not_an_access_token(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    refresh = auth.client.get_cookie("refresh_token", path="/auth").value
    auth.client._cookies.clear()
    response = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {refresh}"})
    assert response.status_code == 401 and error_code(response) == "wrong_token_type"


def test_an_access_token_is_not_a_refresh_token(auth: AuthActions, email: str) -> None:
    access = auth.sign_in(email).get_json()["access_token"]
    csrf = auth.csrf_header("refresh")
    auth.client.set_cookie("refresh_token", access, path="/auth")
    response = auth.client.post("/auth/refresh", headers=csrf)
    assert response.status_code == 401 and error_code(response) in {
        "wrong_token_type",
        "csrf_failed",
    }


def test_refresh_requires_the_cookie_not_a_header(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    refresh = auth.client.get_cookie("refresh_token", path="/auth").value
    auth.client._cookies.clear()
    response = auth.client.post("/auth/refresh", headers={"Authorization": f"Bearer {refresh}"})
    assert response.status_code == 401 and error_code(response) == "token_missing"


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens(valid: str, secret: str) -> dict[str, str]:
    claims = pyjwt.decode(valid, options={"verify_signature": False})
    header, payload, signature = valid.split(".")
    return {
        "garbage": "not-a-token",
        "truncated": valid[:-10],
        "alg_none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "wrong_key": pyjwt.encode(claims, "x" * 64, algorithm="HS256"),
        "other_alg": pyjwt.encode(claims, secret, algorithm="HS512"),
        "wrong_issuer": pyjwt.encode({**claims, "iss": "elsewhere"}, secret, algorithm="HS256"),
        "wrong_audience": pyjwt.encode({**claims, "aud": "elsewhere"}, secret, algorithm="HS256"),
        "tampered_sub": f"{header}.{b64({**claims, 'sub': '999999'})}.{signature}",
        "oversized": valid + "A" * 20_000,
    }


@pytest.mark.parametrize(
    "kind",
    ["garbage", "truncated", "alg_none", "wrong_key", "other_alg", "wrong_issuer",
     "wrong_audience", "tampered_sub", "oversized"],
)
def test_forged_tokens_are_refused_with_json(auth: AuthActions, email: str, kind: str) -> None:
    valid = auth.sign_in(email).get_json()["access_token"]
    token = forged_tokens(valid, auth.app.config["JWT_SECRET_KEY"])[kind]
    auth.client._cookies.clear()
    response = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in {401, 422}
    assert error_code(response).startswith("token_")


def test_an_expired_token_is_refused(auth: AuthActions, email: str) -> None:
    valid = auth.sign_in(email).get_json()["access_token"]
    claims = pyjwt.decode(valid, options={"verify_signature": False})
    with auth.app.app_context():
        expired = create_access_token(
            identity=claims["sub"],
            additional_claims={"sid": claims["sid"]},
            expires_delta=timedelta(seconds=-120),
        )
    auth.client._cookies.clear()
    response = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and error_code(response) == "token_expired"


def test_a_token_of_a_session_redis_never_knew_is_refused(auth: AuthActions) -> None:
    with auth.app.app_context():
        token = create_access_token(identity="1", additional_claims={"sid": "never-issued"})
        no_sid = create_access_token(identity="1")
    for candidate in (token, no_sid):
        response = auth.client.get("/auth/me", headers={"Authorization": f"Bearer {candidate}"})
        assert response.status_code == 401 and error_code(response) == "token_revoked"


def test_tokens_carry_string_sub_issuer_and_audience(auth: AuthActions, email: str) -> None:
    token = auth.sign_in(email).get_json()["access_token"]
    header = pyjwt.get_unverified_header(token)
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert isinstance(claims["sub"], str)
    assert claims["iss"] == auth.app.config["JWT_ENCODE_ISSUER"]
    assert claims["aud"] == auth.app.config["JWT_ENCODE_AUDIENCE"]
