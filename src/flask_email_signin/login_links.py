"""Sign-in by one-click link: build the emailed URL, read a link's state, use a link."""

from __future__ import annotations

from flask import current_app

from . import code_store as store
from .codes import LINK_PURPOSE, email_tag, secret_digest, unseal_email
from .errors import LinkExpired, LinkInvalid, LinkUsed
from .settings import settings
from .state import PAGES_BLUEPRINT

LINK_ENDPOINT = f"{PAGES_BLUEPRINT}.link_page"


def login_link_url(email: str, secret: str) -> str | None:
    """The one-click link, or None when the app serves no pages to open it on.

    Built from OTP_LINK_BASE_URL and the pages' own route (so it follows the
    mount prefix), never from a request's Host. The secret rides in the
    fragment, which browsers never send to a server, so it stays out of access
    logs, proxies and Referer headers; the confirmation page's script posts it.
    The path names the email only by its keyed tag.
    """
    if LINK_ENDPOINT not in current_app.view_functions:
        return None
    path = current_app.url_map.bind("").build(LINK_ENDPOINT, {"tag": email_tag(email)})
    return f"{settings.link_base_url}{path}#{secret}"


def link_state(tag: str) -> store.Outcome:
    """Without consuming anything: pending (seconds left), used or expired."""
    return store.link_state(tag)


def use_login_link(tag: str, secret: str) -> str:
    """Use a sign-in link (its code dies with it); return the email it signs in.

    The URL names the email only by its tag; the email comes back by unsealing
    it with the link's secret, and the store then compares the keyed digest.
    A wrong secret changes nothing in the store (see code_store.CONSUME_LINK).
    """
    sealed = store.sealed_email(tag)
    if sealed is None:  # no link issued, withdrawn, or long expired
        raise LinkExpired()
    email = unseal_email(sealed, tag, secret)
    if email is None:
        raise LinkInvalid()
    outcome = store.consume_link(tag, secret_digest(LINK_PURPOSE, email, secret))
    if outcome.status == "invalid":
        raise LinkInvalid()
    if outcome.status == "used":
        raise LinkUsed()
    if outcome.status != "ok":
        raise LinkExpired()
    return email
