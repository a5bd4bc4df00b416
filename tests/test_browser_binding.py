"""Links bound to the browser that asked, and approval from another device, over HTTP.

Two test clients are two browsers (each keeps its own cookies). The Chromium
journeys are in test_browser_journeys.py; here every rule is pinned down.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_email_signin.code_store import code_key
from flask_email_signin.codes import email_tag
from flask_email_signin.state import redis_client
from support import AuthActions, error_code

BINDING_COOKIE = "email_signin_binding"
CHROME_ON_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def ask_bound(client: FlaskClient, email: str, **headers: str) -> Any:
    return client.post(
        "/auth/request-otp", json={"email": email, "bind_browser": True}, headers=headers
    )


def pending(app: Flask, email: str) -> dict[bytes, bytes]:
    with app.app_context():
        return dict(redis_client().hgetall(code_key(email_tag(email))))


def split_link(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path, parts.fragment


def approval_form(page_html: str) -> dict[str, str]:
    """The approval page's hidden token (the secret comes from the link's fragment)."""
    token = re.search(r'name="token" value="([^"]+)"', page_html)
    assert token, "no approval token on the page"
    return {"token": token.group(1)}


@pytest.fixture
def laptop(auth: AuthActions) -> FlaskClient:
    return auth.client


@pytest.fixture
def phone(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def bound_link(auth: AuthActions, laptop: FlaskClient, email: str) -> tuple[str, str, str]:
    """The laptop asked with a binding: (link path, link secret, the number it shows)."""
    response = ask_bound(laptop, email, **{"User-Agent": CHROME_ON_MAC})
    assert response.status_code == 202
    number = response.get_json()["approval_number"]
    path, secret = split_link(auth.read_link_from_inbox(email))
    return path, secret, number


def decide(client: FlaskClient, path: str, secret: str, decision: str, number: str = "") -> Any:
    page = client.get(path)
    assert page.status_code == 200
    form = {**approval_form(page.get_data(as_text=True)), "secret": secret,
            "decision": decision, "number": number}
    return client.post(f"{path}/decision", data=form)


def poll(client: FlaskClient, email: str) -> Any:
    return client.post("/auth/link-approval", json={"email": email})


def test_a_bound_request_sets_an_httponly_lax_cookie_and_returns_a_number(
    laptop: FlaskClient, email: str, app: Flask
) -> None:
    response = ask_bound(laptop, email)
    assert response.status_code == 202
    assert re.fullmatch(r"\d\d", response.get_json()["approval_number"])
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(BINDING_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/auth" in cookie
    assert f"Max-Age={app.config['OTP_TTL_SECONDS']}" in cookie
    value = laptop.get_cookie(BINDING_COOKIE, path="/auth")
    assert value is not None and len(value.value) == 43
    # Only keyed digests are stored: neither the cookie's value nor the number in clear.
    stored = pending(app, email)
    assert len(stored[b"b"]) == 16 and len(stored[b"y"]) == 16
    number = response.get_json()["approval_number"].encode()
    assert all(value.value.encode() not in v and v != number for v in stored.values())


def test_an_unbound_request_sets_no_cookie_and_has_no_number(
    auth: AuthActions, email: str
) -> None:
    response = auth.request_code(email)
    assert response.get_json()["approval_number"] is None
    assert not any(h.startswith(BINDING_COOKIE) for h in response.headers.getlist("Set-Cookie"))


def test_the_asking_browser_signs_in_with_one_click(
    laptop: FlaskClient, bound_link: tuple[str, str, str], email: str
) -> None:
    path, secret, _number = bound_link
    page = laptop.get(path)
    assert page.status_code == 200 and b'data-automatic="true"' in page.data
    signed_in = laptop.post(path, data={"secret": secret})
    assert signed_in.status_code == 303
    assert laptop.get("/auth/me").get_json()["email"] == email


def test_another_browser_sees_the_approval_page_and_consumes_nothing(
    auth: AuthActions, phone: FlaskClient, bound_link: tuple[str, str, str], email: str,
    app: Flask,
) -> None:
    path, secret, _number = bound_link
    before = pending(app, email)
    page = phone.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Sign in on the device that asked?" in html
    assert "Chrome on macOS" in html and "127.0.0.1" in html
    assert 'data-automatic' not in html
    # Posting the link itself from this browser is refused, and changes nothing.
    refused = phone.post(path, data={"secret": secret})
    assert refused.status_code == 403 and b"Approve this sign-in instead" in refused.data
    assert pending(app, email) == before
    assert phone.get("/auth/me").status_code == 401
    # The laptop's code still works.
    assert auth.verify(email, auth.read_code_from_inbox(email)).status_code == 200


def test_approving_signs_in_the_waiting_browser_once(
    auth: AuthActions, laptop: FlaskClient, phone: FlaskClient,
    bound_link: tuple[str, str, str], email: str,
) -> None:
    path, secret, number = bound_link
    waiting = poll(laptop, email)
    assert waiting.status_code == 202 and waiting.get_json()["status"] == "waiting"
    assert 0 < waiting.get_json()["expires_in"] <= 600

    approved = decide(phone, path, secret, "approve", number)
    assert approved.status_code == 200 and b"Sign-in approved" in approved.data
    assert phone.get("/auth/me").status_code == 401  # the approving device is not signed in

    signed_in = poll(laptop, email)
    assert signed_in.status_code == 200 and signed_in.get_json()["user"]["email"] == email
    assert laptop.get("/auth/me").get_json()["email"] == email
    # Single use: the approval, the link and the code are spent.
    again = poll(laptop, email)
    assert again.status_code == 410 and error_code(again) == "link_used"
    assert error_code(auth.verify(email, auth.read_code_from_inbox(email))) == "otp_used"
    assert b"This link was already used" in phone.get(path).data


def test_denying_ends_the_sign_in_and_tells_the_waiting_browser(
    auth: AuthActions, laptop: FlaskClient, phone: FlaskClient,
    bound_link: tuple[str, str, str], email: str,
) -> None:
    path, secret, _number = bound_link
    denied = decide(phone, path, secret, "deny")
    assert denied.status_code == 200 and b"Sign-in denied" in denied.data
    answer = poll(laptop, email)
    assert answer.status_code == 403 and error_code(answer) == "signin_denied"
    assert error_code(auth.verify(email, auth.read_code_from_inbox(email))) == "otp_expired"
    assert b"This sign-in was denied" in phone.get(path).data
    # Even the asking browser's own click now finds a dead link.
    refused = laptop.post(path, data={"secret": secret})
    assert refused.status_code == 403 and b"This sign-in was denied" in refused.data


def test_a_wrong_number_denies(
    laptop: FlaskClient, phone: FlaskClient, bound_link: tuple[str, str, str], email: str
) -> None:
    path, secret, number = bound_link
    wrong = f"{(int(number) + 1) % 100:02d}"
    answer = decide(phone, path, secret, "approve", wrong)
    assert answer.status_code == 403 and b"The number did not match" in answer.data
    assert error_code(poll(laptop, email)) == "signin_denied"


@pytest.mark.parametrize("change", ["token", "secret", "number", "decision"])
def test_a_malformed_or_forged_decision_changes_nothing(
    laptop: FlaskClient, phone: FlaskClient, bound_link: tuple[str, str, str], email: str,
    app: Flask, change: str,
) -> None:
    path, secret, number = bound_link
    form = {**approval_form(phone.get(path).get_data(as_text=True)), "secret": secret,
            "decision": "approve", "number": number}
    form[change] = {"token": "forged.token", "secret": "A" * 43, "number": "7",
                    "decision": "maybe"}[change]
    before = pending(app, email)
    answer = phone.post(f"{path}/decision", data=form)
    assert answer.status_code in (400, 403) and b"<h1" in answer.data
    assert pending(app, email) == before
    assert poll(laptop, email).status_code == 202


def test_a_decision_posted_from_another_site_is_refused(
    phone: FlaskClient, bound_link: tuple[str, str, str], email: str, app: Flask
) -> None:
    path, secret, number = bound_link
    form = {**approval_form(phone.get(path).get_data(as_text=True)), "secret": secret,
            "decision": "approve", "number": number}
    before = pending(app, email)
    answer = phone.post(f"{path}/decision", data=form,
                        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403 and b"Sign-in refused" in answer.data
    assert pending(app, email) == before


def test_only_the_asking_browser_can_collect_an_approval(
    phone: FlaskClient, app: Flask, bound_link: tuple[str, str, str], email: str
) -> None:
    path, secret, number = bound_link
    assert decide(phone, path, secret, "approve", number).status_code == 200
    stranger = app.test_client()
    no_cookie = poll(stranger, email)
    assert no_cookie.status_code == 403 and error_code(no_cookie) == "not_the_asking_browser"
    stranger.set_cookie(BINDING_COOKIE, "A" * 43, path="/auth")
    wrong_cookie = poll(stranger, email)
    assert wrong_cookie.status_code == 403 and error_code(wrong_cookie) == "not_the_asking_browser"
    assert stranger.get("/auth/me").status_code == 401


def test_an_unbound_link_keeps_its_button_for_any_browser(
    auth: AuthActions, phone: FlaskClient, email: str
) -> None:
    assert auth.request_code(email).status_code == 202
    path, secret = split_link(auth.read_link_from_inbox(email))
    page = phone.get(path)
    assert page.status_code == 200 and b"data-automatic" not in page.data
    assert b"Press the button to sign in on this browser" in page.data
    assert phone.post(path, data={"secret": secret}).status_code == 303
    assert phone.get("/auth/me").get_json()["email"] == email


def test_link_posts_and_polls_are_rate_limited(
    laptop: FlaskClient, phone: FlaskClient, bound_link: tuple[str, str, str], email: str,
    monkeypatch: pytest.MonkeyPatch, app: Flask,
) -> None:
    path, secret, _number = bound_link
    monkeypatch.setitem(app.config, "OTP_RATE_LIMIT_LINK", "2 per minute")
    monkeypatch.setitem(app.config, "OTP_RATE_LIMIT_APPROVAL_POLL", "2 per minute")
    for _ in range(2):
        assert phone.post(path, data={"secret": secret}).status_code == 403
    limited = phone.post(path, data={"secret": secret})
    assert limited.status_code == 429 and b"Too many attempts" in limited.data
    assert int(limited.headers["Retry-After"]) > 0
    for _ in range(2):
        assert poll(laptop, email).status_code == 202
    assert error_code(poll(laptop, email)) == "rate_limited"
