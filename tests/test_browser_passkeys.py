"""Passkeys in Chromium, with the browser's own virtual authenticator (DevTools WebAuthn).

The page is served as http://localhost:<port> (a relying party id must be a domain,
not an IP address), with OTP_LINK_BASE_URL on that origin. The authenticator holds
resident keys and verifies the user, so "touching" it is automatic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, CDPSession, Page, expect
from test_browser_signin import (  # noqa: F401 (fixture)
    ARTIFACTS,
    Screenshots,
    browser,
    served,
)

from support import AuthActions

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def localhost_url(app: Flask, celery_worker: object) -> Iterator[str]:
    with served(app, "localhost") as url:
        yield url


@pytest.fixture
def page(browser: Browser, localhost_url: str) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(base_url=localhost_url, viewport={"width": 1024, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    yield page
    context.close()
    assert problems == []


def virtual_authenticator(page: Page) -> CDPSession:
    """A platform authenticator with resident keys and user verification, always consenting."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {
        "options": {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
        }
    })
    return cdp


def sign_in_by_code(page: Page, auth: AuthActions, email: str) -> None:
    page.goto("/")
    page.get_by_label("Email address").fill(email)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    page.get_by_label("Sign-in code").fill(auth.read_code_from_inbox(email))
    expect(page.get_by_role("heading", name="You are signed in", exact=True)).to_be_visible()


def test_create_a_passkey_then_sign_in_with_it_rename_and_delete_it(
    page: Page, auth: AuthActions, email: str, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    virtual_authenticator(page)
    shots = Screenshots(page, ARTIFACTS / "passkeys")
    sign_in_by_code(page, auth, email)

    # After the email sign-in: the offer.
    expect(page.get_by_role("heading", name="Sign in faster next time")).to_be_visible()
    shots("offer")
    page.get_by_role("button", name="Create a passkey").click()
    expect(page.locator("#passkey-status")).to_have_text("Passkey created.")
    expect(page.locator("#passkey-list li")).to_have_count(1)
    expect(page.locator("#passkey-offer")).to_be_hidden()
    shots("created")

    # Sign out: the email field offers the passkey in its autofill (conditional mediation),
    # and picking it signs in, with nothing typed. The virtual authenticator picks the one
    # passkey at once, as a person choosing it from the autofill list would.
    with page.expect_response("**/auth/passkeys/authenticate") as answered:
        page.get_by_role("button", name="Sign out", exact=True).click()
    assert answered.value.status == 200
    expect(page.locator("#signed-in-email")).to_have_text(email)
    current = page.locator("#session-list li", has_text="This device")
    expect(current).to_contain_text("with a passkey")
    shots("signed-in-with-passkey")

    # Rename.
    page.get_by_role("button", name=re.compile("^Rename ")).click()
    page.get_by_label("Passkey name").fill("Work laptop")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#passkey-list li").first).to_contain_text("Work laptop")

    # Delete needs a recent authentication: with none recent enough, the page confirms
    # with the passkey (step-up), then deletes.
    monkeypatch.setitem(app.config, "OTP_FRESH_LOGIN_SECONDS", 3)
    page.wait_for_timeout(4000)  # the passkey sign-in is now older than that
    with page.expect_response("**/auth/step-up") as stepped_up:
        page.get_by_role("button", name="Delete Work laptop").click()
    assert stepped_up.value.status == 200
    expect(page.locator("#passkey-status")).to_have_text("Passkey deleted.")
    expect(page.locator("#passkey-list li")).to_have_count(0)
    shots("deleted")


def test_the_passkey_button_and_refused_replays_and_relying_parties(
    page: Page, auth: AuthActions, email: str, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A browser without passkey autofill: the button is the way in.
    page.add_init_script(
        "PublicKeyCredential.isConditionalMediationAvailable = async () => false;"
    )
    virtual_authenticator(page)
    sign_in_by_code(page, auth, email)
    page.get_by_role("button", name="Create a passkey").click()
    expect(page.locator("#passkey-list li")).to_have_count(1)
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    Screenshots(page, ARTIFACTS / "passkey-button")("signed-out")

    with page.expect_request("**/auth/passkeys/authenticate") as sent:
        page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.locator("#signed-in-email")).to_have_text(email)
    body: dict[str, Any] = sent.value.post_data_json
    replayed = page.request.post("/auth/passkeys/authenticate", data=body)
    assert replayed.status == 400
    assert replayed.json()["error"]["code"] == "passkey_ceremony_expired"

    # An assertion made for this site (localhost) is refused by a relying party with
    # another id, though its challenge and ceremony are genuine.
    started = page.request.post("/auth/passkeys/authenticate/options").json()
    assertion = page.evaluate(
        """async (options) => {
            const credential = await navigator.credentials.get({
                publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
            return credential.toJSON();
        }""",
        started["options"],
    )
    monkeypatch.setitem(app.config, "OTP_WEBAUTHN_RP_ID", "other.example")
    refused = page.request.post(
        "/auth/passkeys/authenticate",
        data={"ceremony": started["ceremony"], "credential": assertion},
    )
    assert refused.status == 401 and refused.json()["error"]["code"] == "passkey_invalid"
