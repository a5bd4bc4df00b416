"""The sign-in page and the email link, driven in Debian's Chromium through Playwright.

The app is served over real HTTP from a thread, with the suite's private Redis,
SMTP inbox and Celery worker; codes and links are read from the captured email.
Each step's screenshot lands in test-artifacts/browser/<test>/.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from werkzeug.serving import make_server

from app.devtools.redis_server import free_port
from support import AuthActions, other_code

# Starts processes of its own (servers, workers or a browser): `pytest -m "not live"` skips it.
pytestmark = pytest.mark.live

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"


@contextmanager
def served(app: Flask, host: str) -> Iterator[str]:
    """The app on a loopback port, named `host` in its URL; emailed links point at it
    (OTP_LINK_BASE_URL)."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{host}:{port}"
    previous = app.config["OTP_LINK_BASE_URL"]
    app.config["OTP_LINK_BASE_URL"] = url
    try:
        yield url
    finally:
        app.config["OTP_LINK_BASE_URL"] = previous
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(app: Flask, celery_worker: object) -> Iterator[str]:
    with served(app, "127.0.0.1") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium (`make test` installs it; Playwright downloads nothing)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make test` or `apt-get install chromium`.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Screenshots:
    """Numbered screenshots of one test's steps."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page, self.folder, self.count = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    def __call__(self, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh browser context (no cookies) whose page fails the test on script errors."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1024, "height": 760})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"CSP violation: {message.text}")

    page.on("console", on_console)
    yield page
    context.close()
    assert problems == []


@pytest.fixture
def shots(page: Page, request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(page, ARTIFACTS / request.node.name)


def ask_for_a_code(page: Page, email: str) -> None:
    """Type the email and submit with the keyboard, as a person would."""
    page.goto("/")
    expect(page.get_by_label("Email address")).to_be_focused()
    page.keyboard.type(email)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.locator("#code-email")).to_have_text(email)


def expect_signed_in(page: Page, email: str) -> None:
    expect(page.get_by_role("heading", name="You are signed in", exact=True)).to_be_visible()
    expect(page.locator("#signed-in-email")).to_have_text(email)


def test_sign_in_by_typing_the_code_from_the_email(
    page: Page, shots: Screenshots, auth: AuthActions, email: str
) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    shots("email-step")
    ask_for_a_code(page, email)
    # The resend button counts down from the cooldown.
    expect(page.locator("#resend")).to_be_disabled()
    expect(page.locator("#resend")).to_have_text(re.compile(r"Resend code in \d:\d\d"))
    expect(page.get_by_label("Sign-in code")).to_be_focused()
    shots("code-step")

    page.keyboard.type(auth.read_code_from_inbox(email))  # the full code submits by itself
    expect_signed_in(page, email)
    sessions = page.request.get("/auth/sessions")
    if sessions.status == 404:  # the sessions API is optional: the list stays hidden
        expect(page.locator("#sessions")).to_be_hidden()
    else:
        expect(page.locator("#session-list li").first).to_contain_text("This device")
        # Recent activity: this sign-in, marked as this device's, with how it was made.
        first = page.locator("#activity-list li").first
        expect(first).to_contain_text("Signed in")
        expect(first).to_contain_text("This device")
        expect(first).to_contain_text("with an email code")
    shots("signed-in")
    page.set_viewport_size({"width": 390, "height": 760})
    shots("signed-in-phone")
    page.emulate_media(color_scheme="dark")
    shots("signed-in-dark")

    # A reload keeps the session (cookie tokens), without asking for anything.
    page.reload()
    expect_signed_in(page, email)
    assert page.request.get("/auth/me").json()["email"] == email


def test_sign_in_by_the_email_link(
    page: Page, shots: Screenshots, auth: AuthActions, email: str, base_url: str
) -> None:
    ask_for_a_code(page, email)
    link = auth.read_link_from_inbox(email)
    assert link.startswith(f"{base_url}/auth/link/")

    # Show the HTML email as a mail client would, and click its button.
    message = auth.inbox.wait_for(email)[0]
    mail_client = page.context.new_page()
    mail_client.set_content(message.get_body(preferencelist=("html",)).get_content())
    Screenshots(mail_client, shots.folder / "email")("html-email")
    with page.context.expect_page() as opened:
        mail_client.get_by_role("link", name=re.compile("^Sign in to")).click()
    other_tab = opened.value
    # This browser asked for the link (its binding cookie): one click signs in, no button.
    other_tab.wait_for_url(f"{base_url}/auth/login")
    expect_signed_in(other_tab, email)
    Screenshots(other_tab, shots.folder / "link-done")("signed-in")
    # The waiting tab learns it too, from its next poll.
    expect_signed_in(page, email)

    # The code from the same email died with the link.
    expired = page.request.post(
        "/auth/verify-otp",
        data={"email": email, "otp": auth.read_code_from_inbox(email)},
    )
    assert expired.status == 401 and expired.json()["error"]["code"] == "otp_used"

    # Opening the link again gets a clear page.
    other_tab.goto(link)
    expect(other_tab.get_by_role("heading", name="This link was already used")).to_be_visible()
    Screenshots(other_tab, shots.folder / "link-again")("already-used")


def test_a_tampered_link_gets_a_clear_page(
    page: Page, shots: Screenshots, auth: AuthActions, email: str
) -> None:
    ask_for_a_code(page, email)
    link = auth.read_link_from_inbox(email)
    secret = link.rsplit("#", 1)[1]
    # In the browser that asked, the link page posts by itself.
    page.goto(link.replace(secret, ("A" if secret[0] != "A" else "B") + secret[1:]))
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    shots("tampered")

    page.goto(link.split("#", 1)[0])  # the fragment got lost on the way
    expect(page.get_by_text("This link is incomplete")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in")).to_be_disabled()
    shots("incomplete")


def test_a_wrong_code_gets_a_clear_message_then_the_right_one_works(
    page: Page, shots: Screenshots, auth: AuthActions, email: str
) -> None:
    ask_for_a_code(page, email)
    code = auth.read_code_from_inbox(email)
    page.get_by_label("Sign-in code").fill(other_code(code))
    error = page.locator("#code-error")
    expect(error).to_have_text("That code is not correct. 4 tries left.")
    expect(page.get_by_label("Sign-in code")).to_have_attribute("aria-invalid", "true")
    shots("wrong-code")

    # Pasted with a space, the way some mail clients copy it.
    page.get_by_label("Sign-in code").fill(f"{code[:3]} {code[3:]}")
    expect_signed_in(page, email)


def test_sign_out(page: Page, shots: Screenshots, auth: AuthActions, email: str) -> None:
    ask_for_a_code(page, email)
    page.get_by_label("Sign-in code").fill(auth.read_code_from_inbox(email))
    expect_signed_in(page, email)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    shots("signed-out")
    me = page.request.get("/auth/me")
    assert me.status == 401

    page.reload()
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()


def test_an_expired_or_used_code_is_explained(
    page: Page, shots: Screenshots, auth: AuthActions, email: str
) -> None:
    ask_for_a_code(page, email)
    code = auth.read_code_from_inbox(email)
    # Used elsewhere first (another tab, or the link).
    assert page.request.post("/auth/verify-otp", data={"email": email, "otp": code}).ok
    page.context.clear_cookies()
    page.get_by_label("Sign-in code").fill(code)
    expect(page.locator("#code-error")).to_have_text(
        "This code was already used. Ask for a new one with Resend code."
    )
    shots("used-code")


def test_asking_again_too_soon_counts_down_from_retry_after(
    page: Page, shots: Screenshots, auth: AuthActions, email: str
) -> None:
    ask_for_a_code(page, email)
    page.get_by_role("button", name="Use a different email").click()
    expect(page.get_by_label("Email address")).to_have_value(email)
    page.keyboard.press("Enter")  # the same address again, inside the cooldown: 429
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    expect(page.locator("#code-hint")).to_contain_text("moments ago")
    expect(page.locator("#resend")).to_be_disabled()
    expect(page.locator("#resend")).to_have_text(re.compile(r"Resend code in \d:\d\d"))
    shots("cooldown")
    # The code from the first email still signs in.
    page.get_by_label("Sign-in code").fill(auth.read_code_from_inbox(email))
    expect_signed_in(page, email)


def test_an_expired_access_token_is_refreshed_by_the_page(
    page: Page, auth: AuthActions, email: str, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifetime = app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    monkeypatch.setitem(app.config, "JWT_ACCESS_TOKEN_EXPIRES", timedelta(seconds=1))
    ask_for_a_code(page, email)
    page.get_by_label("Sign-in code").fill(auth.read_code_from_inbox(email))
    expect_signed_in(page, email)
    time.sleep(2)
    # The access cookie expired with its token, so the browser no longer sends it.
    assert page.request.get("/auth/me").json()["error"]["code"] == "token_missing"
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = lifetime  # the refreshed token lives normally
    with page.expect_response("**/auth/refresh") as refreshed:
        page.reload()  # the page refreshes with the refresh cookie and its CSRF header
    assert refreshed.value.status == 200
    expect_signed_in(page, email)


def test_requests_that_find_their_token_expired_together_refresh_once(
    page: Page, auth: AuthActions, email: str, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refresh tokens rotate and reuse ends the session: two refreshes at once must not
    happen, or the second would present the token the first just retired."""
    lifetime = app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    monkeypatch.setitem(app.config, "JWT_ACCESS_TOKEN_EXPIRES", timedelta(seconds=1))
    ask_for_a_code(page, email)
    page.get_by_label("Sign-in code").fill(auth.read_code_from_inbox(email))
    expect_signed_in(page, email)
    time.sleep(2)
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = lifetime
    refreshes: list[int] = []
    page.on(
        "response",
        lambda answer: refreshes.append(answer.status) if answer.url.endswith("/refresh") else None,
    )
    statuses = page.evaluate(
        """async () => {
            const { API, authed } = window.emailSignIn;
            const answers = await Promise.all(
                [authed("GET", `${API}/me`), authed("GET", `${API}/sessions`),
                 authed("GET", `${API}/me`)]);
            return answers.map((answer) => answer.status);
        }"""
    )
    assert statuses == [200, 200, 200]
    assert refreshes == [200]
    assert page.request.get("/auth/me").status == 200  # the session is still live
