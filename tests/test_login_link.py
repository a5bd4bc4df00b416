"""The one-click sign-in link: same email as the code, one pending sign-in for both."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import render_template
from test_config import production_config

from app import create_app
from flask_email_signin import UnsafeSettingError
from flask_email_signin.code_store import code_key
from flask_email_signin.codes import email_tag
from flask_email_signin.i18n import template_context
from flask_email_signin.state import redis_client
from support import AuthActions, error_code, other_code


def split_link(url: str) -> tuple[str, str]:
    """(path to GET/POST, secret from the fragment) of an emailed link."""
    parts = urlsplit(url)
    return parts.path, parts.fragment


def post_link(auth: AuthActions, path: str, secret: str, **headers: str) -> Any:
    return auth.client.post(path, data={"secret": secret}, headers=headers)


def tampered(secret: str) -> str:
    """The same secret with its first character changed."""
    return ("A" if secret[0] != "A" else "B") + secret[1:]


@pytest.fixture
def link(auth: AuthActions, email: str) -> tuple[str, str]:
    """A code was requested for `email`; the link from its email."""
    assert auth.request_code(email).status_code == 202
    return split_link(auth.read_link_from_inbox(email))


def test_the_email_carries_the_code_and_the_link_in_both_parts(
    auth: AuthActions, email: str, link: tuple[str, str]
) -> None:
    message = auth.inbox.wait_for(email)[0]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    code = auth.read_code_from_inbox(email)
    url = auth.read_link_from_inbox(email)
    for part in (text, html):
        assert code in part and url in part
    # The link names the email only by its keyed tag; the secret sits in the fragment.
    path, secret = link
    assert email not in url and path == f"/auth/link/{email_tag(email)}" and len(secret) == 43
    assert url.startswith("http://localhost:8000/auth/link/")


def test_the_link_secret_is_stored_only_as_a_keyed_hash(
    auth: AuthActions, email: str, link: tuple[str, str]
) -> None:
    _path, secret = link
    with auth.app.app_context():
        stored = redis_client().hgetall(code_key(email_tag(email)))
    assert stored[b"l"] and len(stored[b"l"]) == 16
    for value in stored.values():
        assert secret.encode() not in value and email.encode() not in value


def test_get_consumes_nothing_and_the_code_still_works(
    auth: AuthActions, email: str, link: tuple[str, str]
) -> None:
    path, _secret = link
    for _ in range(3):  # a mail scanner, a preview, the person
        page = auth.client.get(path)
        assert page.status_code == 200
        assert b"<form" in page.data and b'method="post"' in page.data
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["Cache-Control"] == "no-store"
    response = auth.verify(email, auth.read_code_from_inbox(email))
    assert response.status_code == 200 and response.get_json()["user"]["email"] == email


def test_post_signs_this_browser_in(
    auth: AuthActions, email: str, link: tuple[str, str]
) -> None:
    path, secret = link
    response = post_link(auth, path, secret)
    assert response.status_code == 303 and response.headers["Location"] == "/auth/login"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert auth.client.get_cookie("access_token") is not None
    assert auth.client.get_cookie("refresh_token", path="/auth") is not None
    me = auth.client.get("/auth/me")
    assert me.status_code == 200 and me.get_json()["email"] == email
    # Same session machinery as verify-otp: sign-out works with the CSRF header.
    assert auth.client.post("/auth/logout", headers=auth.csrf_header()).status_code == 200


def test_the_code_is_dead_once_the_link_was_used(
    auth: AuthActions, email: str, link: tuple[str, str]
) -> None:
    path, secret = link
    assert post_link(auth, path, secret).status_code == 303
    response = auth.verify(email, auth.read_code_from_inbox(email))
    assert response.status_code == 401 and error_code(response) == "otp_used"


def test_the_link_is_dead_once_the_code_was_used(
    auth: AuthActions, email: str, link: tuple[str, str]
) -> None:
    path, secret = link
    assert auth.verify(email, auth.read_code_from_inbox(email)).status_code == 200
    auth.client._cookies.clear()
    page = auth.client.get(path)
    assert page.status_code == 410 and b"already used" in page.data
    response = post_link(auth, path, secret)
    assert response.status_code == 410 and b"already used" in response.data
    assert auth.client.get_cookie("access_token") is None


def test_a_link_works_once(auth: AuthActions, link: tuple[str, str]) -> None:
    path, secret = link
    assert post_link(auth, path, secret).status_code == 303
    again = post_link(auth, path, secret)
    assert again.status_code == 410 and b"already used" in again.data


def test_a_tampered_secret_is_refused_and_burns_nothing(
    auth: AuthActions, email: str, link: tuple[str, str]
) -> None:
    path, secret = link
    max_attempts = auth.app.config["OTP_MAX_ATTEMPTS"]
    for _ in range(max_attempts + 1):
        response = post_link(auth, path, tampered(secret))
        assert response.status_code == 400 and b"not valid" in response.data
        assert auth.client.get_cookie("access_token") is None
    # Wrong links cost the attacker nothing and the owner nothing: the code has all its tries.
    wrong = auth.verify(email, other_code(auth.read_code_from_inbox(email)))
    assert wrong.get_json()["error"]["details"]["attempts_left"] == max_attempts - 1
    assert post_link(auth, path, secret).status_code == 303


@pytest.mark.parametrize(
    "mangle",
    [
        lambda path, secret: (path, secret[:-1]),  # cut short by a mail client
        lambda path, secret: (path, ""),  # fragment lost
        lambda path, secret: (path, secret + "x"),
        lambda path, secret: (path[:-1] + ("A" if path[-1] != "A" else "B"), secret),  # other tag
        lambda path, secret: ("/auth/link/not-a-tag", secret),
    ],
    ids=["short-secret", "no-secret", "long-secret", "other-tag", "malformed-tag"],
)
def test_mangled_links_get_a_clear_page(
    auth: AuthActions, email: str, link: tuple[str, str], mangle: Any
) -> None:
    path, secret = mangle(*link)
    response = post_link(auth, path, secret)
    assert response.status_code in {400, 410}
    assert response.mimetype == "text/html" and b"Back to sign in" in response.data
    assert auth.client.get_cookie("access_token") is None
    # The real link still works.
    assert post_link(auth, *link).status_code == 303


def test_a_link_replaced_by_a_newer_email_is_refused(
    auth: AuthActions, email: str, link: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)
    path, old_secret = link
    assert auth.request_code(email).status_code == 202
    new_path, new_secret = split_link(auth.read_link_from_inbox(email, count=2))
    assert new_path == path and new_secret != old_secret
    response = post_link(auth, path, old_secret)
    assert response.status_code == 400 and b"newer email" in response.data
    assert post_link(auth, new_path, new_secret).status_code == 303


def test_an_expired_link_gets_a_clear_page(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_TTL_SECONDS", 2)
    auth.request_code(email)
    path, secret = split_link(auth.read_link_from_inbox(email))
    time.sleep(3)
    page = auth.client.get(path)
    assert page.status_code == 410 and b"expired" in page.data
    response = post_link(auth, path, secret)
    assert response.status_code == 410 and b"expired" in response.data


def test_the_link_still_works_after_strangers_burned_the_code(
    auth: AuthActions, email: str, link: tuple[str, str]
) -> None:
    """Guessing the 6 digits kills the code; the 256-bit link cannot be guessed, so it lives."""
    code = auth.read_code_from_inbox(email)
    for _ in range(auth.app.config["OTP_MAX_ATTEMPTS"]):
        auth.verify(email, other_code(code))
    assert error_code(auth.verify(email, code)) == "otp_attempts_exceeded"
    assert post_link(auth, *link).status_code == 303
    assert auth.client.get("/auth/me").get_json()["email"] == email


def test_a_cross_site_post_is_refused(auth: AuthActions, link: tuple[str, str]) -> None:
    """Login CSRF: another site must not sign a visitor in with its own link."""
    path, secret = link
    for headers in (
        {"Origin": "https://evil.example"},
        # With Referrer-Policy: no-referrer browsers post `Origin: null`.
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "null", "Sec-Fetch-Site": "same-site"},
    ):
        refused = post_link(auth, path, secret, **headers)
        assert refused.status_code == 403 and b"another website" in refused.data
        assert auth.client.get_cookie("access_token") is None
    same_site = post_link(
        auth, path, secret, Origin="null", **{"Sec-Fetch-Site": "same-origin"}
    )
    assert same_site.status_code == 303


def test_links_use_the_configured_base_url_not_the_host_header(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_LINK_BASE_URL", "https://signin.example.org/")
    response = auth.client.post(
        "/auth/request-otp",
        json={"email": email},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 202
    url = auth.read_link_from_inbox(email)
    assert url.startswith(f"https://signin.example.org/auth/link/{email_tag(email)}#")
    assert "evil" not in str(auth.inbox.wait_for(email)[0])


def test_the_email_shows_the_configured_branding(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_APP_NAME", "Acme Notes")
    monkeypatch.setitem(auth.app.config, "OTP_ACCENT_COLOR", "#0a7d5a")
    monkeypatch.setitem(auth.app.config, "OTP_SUPPORT_EMAIL", "help@acme.example")
    auth.request_code(email)
    message = auth.inbox.wait_for(email)[0]
    html = message.get_body(preferencelist=("html",)).get_content()
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Acme Notes" in message["Subject"]
    assert "Acme Notes" in html and "#0a7d5a" in html and "help@acme.example" in html
    assert "Acme Notes" in text and "help@acme.example" in text


def test_a_host_template_overrides_the_built_in_email(suite_config: type, tmp_path: Any) -> None:
    (tmp_path / "email_signin" / "email").mkdir(parents=True)
    override = tmp_path / "email_signin" / "email" / "login_code.txt"
    override.write_text("Custom: {{ code }} {{ link_url }}")
    app = create_app(type("Override", (suite_config,), {"OTP_TEMPLATE_FOLDER": str(tmp_path)}))
    context = {"code": "123456", "link_url": "L", "app_name": "X", "minutes": 1,
               "accent_color": "#000", "support_email": None}
    with app.app_context():
        overridden = render_template(
            "email_signin/email/login_code.txt", **context, **template_context(html=False)
        )
        built_in = render_template(
            "email_signin/email/login_code.html", **context, **template_context()
        )
    assert overridden == "Custom: 123456 L"
    assert "123456" in built_in and "Custom" not in built_in


@pytest.mark.parametrize(
    ("base_url", "refused"),
    [
        ("http://signin.example.org", True),
        ("signin.example.org", True),
        ("https://signin.example.org", False),
        ("http://localhost:8000", False),  # the development default never leaves the machine
    ],
)
def test_production_wants_https_links(suite_config: type, base_url: str, refused: bool) -> None:
    config = production_config(suite_config, OTP_LINK_BASE_URL=base_url)
    if refused:
        with pytest.raises(UnsafeSettingError, match="OTP_LINK_BASE_URL"):
            create_app(config)
    else:
        assert create_app(config).config["OTP_LINK_BASE_URL"] == base_url
