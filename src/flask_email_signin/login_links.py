"""Sign-in by one-click link: build the emailed URL, show a link, use it, approve it elsewhere.

A link of a request that bound a browser (see browser_binding) signs in that
browser only. Opened anywhere else it can only approve or deny that browser's
sign-in, after the person types the number the asking browser shows; the asking
page collects an approval by polling (`collect_approval`).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from . import audit
from . import code_store as store
from .browser_binding import presented_binding
from .codes import (
    APPROVAL_PURPOSE,
    LINK_PURPOSE,
    binding_digest,
    email_tag,
    secret_digest,
    unseal_email,
)
from .errors import (
    ApprovalTokenInvalid,
    CodeExpired,
    LinkBoundElsewhere,
    LinkExpired,
    LinkInvalid,
    LinkUsed,
    NotTheAskingBrowser,
    SignInDenied,
)
from .metrics import VERIFICATIONS
from .settings import settings
from .state import PAGES_BLUEPRINT

LINK_ENDPOINT = f"{PAGES_BLUEPRINT}.link_page"
APPROVAL_TOKEN_SALT = "email-signin-approval"  # noqa: S105 (a salt, not a secret)


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


def _this_browser(tag: str) -> bytes | None:
    binding = presented_binding()
    return binding_digest(tag, binding) if binding else None


def link_view(tag: str) -> store.LinkView:
    """Without consuming anything: the link's state, and whether this browser asked for it."""
    return store.link_view(tag, _this_browser(tag))


def _email_of_link(tag: str, secret: str) -> str:
    """The email a link signs in, unsealed with the link's secret (LinkInvalid if wrong).

    The URL names the email only by its tag; a wrong secret unseals garbage,
    and the store compares the keyed digest before anything happens.
    """
    sealed = store.sealed_email(tag)
    if sealed is None:  # no link issued, withdrawn, or long expired
        raise LinkExpired()
    email = unseal_email(sealed, tag, secret)
    if email is None:
        raise LinkInvalid()
    return email


def _raise_for_link(status: str) -> None:
    if status == "invalid":
        raise LinkInvalid()
    if status == "used":
        raise LinkUsed()
    if status == "denied":
        raise SignInDenied()
    if status == "unbound":
        raise LinkBoundElsewhere()
    raise LinkExpired()


def use_login_link(tag: str, secret: str) -> str:
    """Use a sign-in link in this browser (its code dies with it); return its email."""
    email = _email_of_link(tag, secret)
    outcome = store.consume_link(
        tag, secret_digest(LINK_PURPOSE, email, secret), _this_browser(tag)
    )
    if outcome.status != "ok":
        _raise_for_link(outcome.status)
    VERIFICATIONS.labels("link").inc()
    audit.record(audit.LINK_USED, email=email, email_tag=tag)
    return email


def approval_token(tag: str) -> str:
    """A fresh token for the approval form: signed, bound to this link, expiring with codes."""
    return _serializer().dumps(tag)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=APPROVAL_TOKEN_SALT)


@dataclass(frozen=True)
class Decision:
    status: str  # approved, denied, mismatch


def decide_login_link(tag: str, secret: str, token: str, *, approve: bool, number: str) -> Decision:
    """Approve (with the number the asking browser shows) or deny its pending sign-in."""
    try:
        signed_tag = _serializer().loads(token, max_age=settings.code_ttl)
    except BadSignature:
        raise ApprovalTokenInvalid() from None
    if signed_tag != tag:
        raise ApprovalTokenInvalid()
    email = _email_of_link(tag, secret)
    outcome = store.decide(
        tag,
        secret_digest(LINK_PURPOSE, email, secret),
        approve=approve,
        number_digest=secret_digest(APPROVAL_PURPOSE, email, number) if approve else None,
    )
    if outcome.status in ("approved", "denied", "mismatch"):
        VERIFICATIONS.labels(f"link_{outcome.status}").inc()
        event = audit.LINK_APPROVED if outcome.status == "approved" else audit.LINK_DENIED
        audit.record(event, email=email, email_tag=tag, detail={"outcome": outcome.status})
        return Decision(outcome.status)
    if outcome.status == "unbound":
        # No browser is waiting: nothing to approve (the link's own page signs in).
        raise LinkInvalid()
    _raise_for_link(outcome.status)
    raise AssertionError  # unreachable: _raise_for_link always raises


@dataclass(frozen=True)
class Approval:
    approved: bool
    seconds_left: int = 0


def collect_approval(email: str) -> Approval:
    """The asking browser's poll: approved once approved elsewhere (the code is then
    used), else still waiting; raises when the sign-in can no longer be approved."""
    binding = presented_binding()
    tag = email_tag(email)
    if binding is None:
        raise NotTheAskingBrowser()
    outcome = store.collect_approval(tag, binding_digest(tag, binding))
    if outcome.status == "ok":
        VERIFICATIONS.labels("approved").inc()
        return Approval(approved=True)
    if outcome.status == "pending":
        return Approval(approved=False, seconds_left=outcome.value)
    if outcome.status == "denied":
        raise SignInDenied()
    if outcome.status == "used":
        raise LinkUsed()
    if outcome.status == "unbound":
        raise NotTheAskingBrowser()
    raise CodeExpired()
