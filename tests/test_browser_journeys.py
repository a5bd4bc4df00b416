"""The journeys peers get wrong, in Chromium: links bound to the browser that asked,
approval from another device, honest code errors, and the page in other languages.

Two browser contexts are two devices: they share no cookies. Screenshots land in
test-artifacts/browser/<test>/.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, expect
from test_browser_signin import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    Screenshots,
    ask_for_a_code,
    base_url,
    browser,
    expect_signed_in,
)

from flask_email_signin.code_store import code_key
from flask_email_signin.codes import email_tag
from flask_email_signin.state import redis_client
from support import AuthActions

pytestmark = pytest.mark.live


@pytest.fixture
def devices(browser: Browser, base_url: str) -> Iterator[tuple[Page, Page]]:  # noqa: F811
    """Two devices: the laptop that asks for a code, and the phone that opens the email."""
    contexts: list[BrowserContext] = []
    pages = []
    problems: list[str] = []
    for _ in range(2):
        context = browser.new_context(base_url=base_url, viewport={"width": 1024, "height": 760})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        pages.append(page)
    yield pages[0], pages[1]
    for context in contexts:
        context.close()
    assert problems == []


def pending_state(app: Flask, email: str) -> dict[bytes, bytes]:
    with app.app_context():
        return dict(redis_client().hgetall(code_key(email_tag(email))))


def test_the_link_signs_in_the_browser_that_asked_with_one_click(
    devices: tuple[Page, Page], auth: AuthActions, email: str, base_url: str  # noqa: F811
) -> None:
    laptop, _phone = devices
    shots = Screenshots(laptop, ARTIFACTS / "same-browser-link")
    ask_for_a_code(laptop, email)
    expect(laptop.locator("#approval-number")).to_have_text(re.compile(r"^\d\d$"))
    shots("waiting")
    link = auth.read_link_from_inbox(email)

    # The same browser (another tab, as a mail client opens it): no button to press.
    tab = laptop.context.new_page()
    tab.goto(link)
    tab.wait_for_url(f"{base_url}/auth/login")
    expect_signed_in(tab, email)
    Screenshots(tab, ARTIFACTS / "same-browser-link" / "tab")("signed-in")
    expect_signed_in(laptop, email)  # the waiting tab follows


def test_a_link_opened_on_another_device_approves_the_waiting_browser(
    devices: tuple[Page, Page], auth: AuthActions, email: str
) -> None:
    laptop, phone = devices
    ask_for_a_code(laptop, email)
    number = laptop.locator("#approval-number").inner_text()
    assert re.fullmatch(r"\d\d", number)

    phone.goto(auth.read_link_from_inbox(email))
    expect(phone.get_by_role("heading", name="Sign in on the device that asked?")).to_be_visible()
    # Who asked: the browser, its address, its time (shown in the phone's own time zone).
    expect(phone.locator(".lead")).to_contain_text("Chrome on Linux")
    expect(phone.locator(".lead")).to_contain_text("127.0.0.1")
    expect(phone.locator(".lead time")).to_have_text(re.compile(r"\d\d:\d\d"))
    Screenshots(phone, ARTIFACTS / "approve-elsewhere" / "phone")("approval-page")

    # Meanwhile the laptop's code box still works: nothing was consumed by opening the link.
    expect(laptop.get_by_label("Sign-in code")).to_be_editable()

    phone.get_by_label("The number shown on that device").fill(number)
    phone.get_by_role("button", name="Approve").click()
    expect(phone.get_by_role("heading", name="Sign-in approved")).to_be_visible()
    Screenshots(phone, ARTIFACTS / "approve-elsewhere" / "phone-done")("approved")

    expect_signed_in(laptop, email)  # within a poll or two
    Screenshots(laptop, ARTIFACTS / "approve-elsewhere" / "laptop")("signed-in")
    # The phone approved; it is not signed in itself.
    assert phone.request.get("/auth/me").status == 401
    # Opening the link again: it was used.
    phone.goto(auth.read_link_from_inbox(email))
    expect(phone.get_by_role("heading", name="This link was already used")).to_be_visible()


def test_denying_on_another_device_ends_the_sign_in_and_tells_the_waiting_page(
    devices: tuple[Page, Page], auth: AuthActions, email: str
) -> None:
    laptop, phone = devices
    ask_for_a_code(laptop, email)
    phone.goto(auth.read_link_from_inbox(email))
    phone.get_by_role("button", name="Deny").click()
    expect(phone.get_by_role("heading", name="Sign-in denied")).to_be_visible()
    expect(laptop.locator("#approval-status")).to_contain_text("denied on the other device")
    Screenshots(laptop, ARTIFACTS / "deny-elsewhere")("denied")
    # The code of that email died with the denial.
    laptop.get_by_label("Sign-in code").fill(auth.read_code_from_inbox(email))
    expect(laptop.locator("#code-error")).to_contain_text("expired")
    assert laptop.request.get("/auth/me").status == 401


def test_a_wrong_number_refuses_the_sign_in(
    devices: tuple[Page, Page], auth: AuthActions, email: str
) -> None:
    laptop, phone = devices
    ask_for_a_code(laptop, email)
    number = laptop.locator("#approval-number").inner_text()
    phone.goto(auth.read_link_from_inbox(email))
    phone.get_by_label("The number shown on that device").fill(f"{(int(number) + 1) % 100:02d}")
    phone.get_by_role("button", name="Approve").click()
    expect(phone.get_by_role("heading", name="The number did not match")).to_be_visible()
    expect(laptop.locator("#approval-status")).to_contain_text("denied")
    assert laptop.request.get("/auth/me").status == 401


def test_a_plain_http_get_of_the_link_consumes_nothing(
    devices: tuple[Page, Page], auth: AuthActions, email: str, app: Flask
) -> None:
    laptop, _phone = devices
    ask_for_a_code(laptop, email)
    link = auth.read_link_from_inbox(email)
    before = pending_state(app, email)
    # A mail scanner: no cookies, no script, follows the URL (the fragment never leaves it).
    with urllib.request.urlopen(link.split("#", 1)[0], timeout=10) as response:
        assert response.status == 200
        assert b"Sign in on the device that asked?" in response.read()
    assert pending_state(app, email) == before
    # The person then opens it in the browser that asked: still one click.
    tab = laptop.context.new_page()
    tab.goto(link)
    expect_signed_in(tab, email)


def test_an_older_code_is_told_apart_from_a_wrong_one(
    devices: tuple[Page, Page], auth: AuthActions, email: str, app: Flask,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    laptop, _phone = devices
    monkeypatch.setitem(app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)
    ask_for_a_code(laptop, email)
    first, second, sent = auth.read_code_from_inbox(email, count=1), "", 1
    while second in ("", first):  # a one-in-a-million draw repeats the code: ask again
        laptop.get_by_role("button", name="Resend code").click()
        sent += 1
        second = auth.read_code_from_inbox(email, count=sent)
    laptop.get_by_label("Sign-in code").fill(first)
    expect(laptop.locator("#code-error")).to_have_text(
        "A newer code was sent to you: use the code in the latest email."
    )
    Screenshots(laptop, ARTIFACTS / "superseded-code")("superseded")
    laptop.get_by_label("Sign-in code").fill(second)
    expect_signed_in(laptop, email)


@pytest.mark.parametrize(
    ("locale", "heading", "direction"),
    [("de-DE", "Anmelden", "ltr"), ("ar", "تسجيل الدخول", "rtl"), ("ja-JP", "ログイン", "ltr")],
)
def test_the_page_speaks_the_browser_language(
    browser: Browser, base_url: str, auth: AuthActions, email: str,  # noqa: F811
    locale: str, heading: str, direction: str,
) -> None:
    context = browser.new_context(
        base_url=base_url, locale=locale, viewport={"width": 1024, "height": 760}
    )
    try:
        page = context.new_page()
        shots = Screenshots(page, ARTIFACTS / f"locale-{locale}")
        page.goto("/")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        assert page.locator("html").get_attribute("dir") == direction
        shots("email-step")
        page.locator("#email").fill(email)
        page.keyboard.press("Enter")
        expect(page.locator("#code-email")).to_have_text(email)
        # The script's own messages are in the page's language too (the resend countdown).
        expect(page.locator("#resend")).not_to_have_text(re.compile("Resend code"))
        shots("code-step")
        # And so is the email the worker sent.
        message = auth.inbox.wait_for(email)[0]
        assert "Sign in to" not in message.get_body(preferencelist=("plain",)).get_content()
        page.locator("#code").fill(auth.read_code_from_inbox(email))
        expect(page.locator("#step-done")).to_be_visible()
        shots("signed-in")
    finally:
        context.close()
