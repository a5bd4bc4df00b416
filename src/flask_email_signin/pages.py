"""The pages blueprint: the sign-in page and the one-click link pages people see.

Mounted at OTP_URL_PREFIX next to the API (`<prefix>/login`, `<prefix>/link/<tag>`,
`<prefix>/assets/...`) when OTP_PAGES is on; it never takes the host's `/`. Its
templates (`email_signin/*.html`) come after the app's own template folder, so a
host overrides one by placing a file at the same path there. Plain HTML, CSS and a
little JavaScript; no build step. The pages call the services, never the stores.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import redis
from babel.dates import format_time
from flask import Response, current_app, make_response, redirect, render_template, request, url_for
from flask_babel.speaklater import LazyString
from markupsafe import Markup

from . import email_change, login_links
from .blueprints import extension_blueprint
from .branding import accent_color, branding
from .errors import (
    AccountInactive,
    APIError,
    ApprovalTokenInvalid,
    EmailChangeLinkInvalid,
    EmailTaken,
    LinkBoundElsewhere,
    LinkExpired,
    LinkInvalid,
    LinkUsed,
    RateLimited,
    SignInDenied,
    SignupClosed,
)
from .i18n import current_locale, gettext, template_context
from .i18n import lazy_gettext as _l
from .page_text import page_messages
from .rate_limits import rate_limited
from .settings import settings
from .sign_in import complete_sign_in
from .state import API_BLUEPRINT, PAGES_BLUEPRINT
from .user_agents import describe_device

bp = extension_blueprint(
    PAGES_BLUEPRINT,
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

log = logging.getLogger(__name__)

# token_urlsafe(32) and the 12-byte email tag, both unpadded URL-safe base64.
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
_TAG = re.compile(r"[A-Za-z0-9_-]{16}")
_NUMBER = re.compile(r"[0-9]{2}")

# No inline script or style anywhere: everything comes from this origin's files.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


@bp.after_request
def add_security_headers(response: Response) -> Response:
    """Strict CSP, no Referer (link pages carry a secret in their URL), no framing or caching."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def _page(template: str, status: int = 200, **context: object) -> Response:
    return make_response(
        render_template(template, **branding(), **template_context(), **page_links(), **context),
        status,
    )


def page_links() -> dict[str, Markup]:
    """Elements the pages' translated sentences embed (escaped in, never translated)."""
    address = settings.support_email
    return {
        "support_link": Markup('<a href="mailto:{0}">{0}</a>').format(address or ""),
        "sign_in_page_link": Markup('<a href="{0}">{1}</a>').format(
            url_for(".sign_in_page"), gettext("sign-in page")
        ),
    }


def _problem(title: str, message: str, status: int) -> Response:
    return _page("email_signin/link_problem.html", status, title=title, message=message)


PROBLEM_TITLES: dict[type[APIError], LazyString] = {
    LinkInvalid: _l("This link does not work"),
    LinkExpired: _l("This link has expired"),
    LinkUsed: _l("This link was already used"),
    SignInDenied: _l("This sign-in was denied"),
    LinkBoundElsewhere: _l("Approve this sign-in instead"),
    ApprovalTokenInvalid: _l("This page is out of date"),
    AccountInactive: _l("This account is deactivated"),
    SignupClosed: _l("Sign-up is by invitation only"),
    RateLimited: _l("Too many attempts"),
    EmailChangeLinkInvalid: _l("This link does not work"),
    EmailTaken: _l("That address is taken"),
}
LINK_ERRORS = tuple(PROBLEM_TITLES)


def _problem_for(error: APIError) -> Response:
    response = _problem(str(PROBLEM_TITLES[type(error)]), str(error.message), error.status)
    response.headers.update(error.headers)
    return response


@bp.get("/login")
def sign_in_page() -> Response:
    """The sign-in page: email, then the emailed code, then the signed-in view."""
    config = current_app.config
    return _page(
        "email_signin/signin.html",
        code_length=settings.code_length,
        # The page's script calls the API wherever it is mounted.
        api_base=url_for(f"{API_BLUEPRINT}.request_otp").rsplit("/", 1)[0],
        csrf_access_cookie=config["JWT_ACCESS_CSRF_COOKIE_NAME"],
        csrf_refresh_cookie=config["JWT_REFRESH_CSRF_COOKIE_NAME"],
        code_email=Markup('<strong id="code-email" class="address"></strong>'),
        signed_in_email=Markup('<strong id="signed-in-email" class="address"></strong>'),
        page_messages=page_messages(),
        passkeys=settings.passkeys_enabled,
    )


@bp.get("/theme.css")
def theme_css() -> Response:
    """The configured accent colour as a CSS variable (the CSP allows no inline style)."""
    response = make_response(f":root {{ --accent: {accent_color()}; }}\n")
    response.mimetype = "text/css"
    return response


@bp.get("/link/<tag>")
def link_page(tag: str) -> Response:
    """An emailed link; consumes nothing (mail scanners open links, run scripts, press buttons).

    In the browser that asked, the page signs in at once; in another browser (or
    for a scanner) it offers to approve the asking browser's sign-in instead; a
    link of an unbound request keeps a button that signs in this browser.
    """
    if not _TAG.fullmatch(tag):
        return _problem_for(LinkInvalid())
    view = login_links.link_view(tag)
    if view.status == "used":
        return _problem_for(LinkUsed())
    if view.status == "denied":
        return _problem_for(SignInDenied())
    if view.status != "pending":
        return _problem_for(LinkExpired())
    if view.binding == "elsewhere":
        return _page(
            "email_signin/link_approve.html",
            tag=tag,
            approval_token=login_links.approval_token(tag),
            asker_device=describe_device(view.user_agent),
            asker_time=Markup('<time datetime="{0}">{1}</time>').format(
                datetime.fromtimestamp(view.asked_at, UTC).isoformat(),
                format_time(datetime.fromtimestamp(view.asked_at, UTC), "short", tzinfo=UTC,
                            locale=current_locale()) + " UTC",
            ),
            asker_ip=view.ip or gettext("an unknown address"),
        )
    minutes = max(1, -(-view.seconds_left // 60))
    return _page(
        "email_signin/link_confirm.html", tag=tag, minutes=minutes,
        automatic=view.binding == "here",
    )


@bp.post("/link/<tag>")
@rate_limited("OTP_RATE_LIMIT_LINK")
def use_link(tag: str) -> Response:
    """Sign this browser in with the link's secret, then show the signed-in page."""
    if not posted_from_this_site():
        return _cross_site_refusal()
    secret = request.form.get("secret", "")
    if not (_TAG.fullmatch(tag) and _SECRET.fullmatch(secret)):
        return _problem_for(LinkInvalid())
    try:
        signed_in = complete_sign_in(login_links.use_login_link(tag, secret), method="link")
    except LINK_ERRORS as error:
        return _problem_for(error)
    response = make_response(redirect(url_for(".sign_in_page"), code=303))
    signed_in.set_cookies(response)
    return response


@bp.post("/link/<tag>/decision")
@rate_limited("OTP_RATE_LIMIT_LINK")
def decide_link(tag: str) -> Response:
    """Approve or deny, from another device, the sign-in of the browser that asked."""
    if not posted_from_this_site():
        return _cross_site_refusal()
    form = request.form
    secret, decision = form.get("secret", ""), form.get("decision", "")
    number = form.get("number", "").strip()
    approve = decision == "approve"
    well_formed = (
        _TAG.fullmatch(tag) and _SECRET.fullmatch(secret) and decision in ("approve", "deny")
        and (not approve or _NUMBER.fullmatch(number))
    )
    if not well_formed:
        return _problem_for(LinkInvalid())
    try:
        outcome = login_links.decide_login_link(
            tag, secret, form.get("token", ""), approve=approve, number=number
        )
    except LINK_ERRORS as error:
        return _problem_for(error)
    title, message = DECISION_PAGES[outcome.status]
    return _page(
        "email_signin/link_problem.html",
        403 if outcome.status == "mismatch" else 200,
        title=str(title), message=str(message),
        badge="done" if outcome.status == "approved" else "problem",
    )


DECISION_PAGES = {
    "approved": (
        _l("Sign-in approved"),
        _l("The device that asked is now signed in. You can close this page."),
    ),
    "denied": (
        _l("Sign-in denied"),
        _l("Nobody was signed in, and the code in that email no longer works."),
    ),
    "mismatch": (
        _l("The number did not match"),
        _l("For your safety this sign-in was refused, and its code no longer works. "
           "Ask for a new code on the device you want to sign in."),
    ),
}


@bp.get("/email-change/<int:user_id>")
def email_change_confirm_page(user_id: int) -> Response:
    """The link mailed to a new address; changes nothing until its button is pressed."""
    return _page(
        "email_signin/email_change.html",
        title=gettext("Confirm your new address"),
        lead=gettext("Press the button to make this address the one of your %(app)s account.",
                     app=settings.app_name),
        button=gettext("Confirm this address"),
        action=url_for(".confirm_email_change", user_id=user_id),
    )


@bp.post("/email-change/<int:user_id>")
@rate_limited("OTP_RATE_LIMIT_LINK")
def confirm_email_change(user_id: int) -> Response:
    return _use_email_change_link(
        email_change.confirm_with_link, user_id, gettext("Address changed"),
        lambda address: gettext("Your account now uses %(address)s.", address=address),
    )


@bp.get("/email-change/<int:user_id>/undo")
def email_change_undo_page(user_id: int) -> Response:
    """The "this wasn't me" link mailed to the old address; acts only on its button."""
    return _page(
        "email_signin/email_change.html",
        title=gettext("Undo the address change"),
        lead=gettext("Press the button to put your old address back and sign out every "
                     "device, including whoever changed it."),
        button=gettext("Put my old address back"),
        action=url_for(".undo_email_change", user_id=user_id),
    )


@bp.post("/email-change/<int:user_id>/undo")
@rate_limited("OTP_RATE_LIMIT_LINK")
def undo_email_change(user_id: int) -> Response:
    return _use_email_change_link(
        email_change.undo_email_change, user_id, gettext("Your address is back"),
        lambda address: gettext("Your account uses %(address)s again, and every device was "
                                "signed out. Sign in again to continue.", address=address),
    )


def _use_email_change_link(
    use: Callable[[int, str], str], user_id: int, title: str, done: Callable[[str], str]
) -> Response:
    """A posted address-change link: same-site, well-formed, then `use`d; a page either way."""
    if not posted_from_this_site():
        return _cross_site_refusal()
    secret = request.form.get("secret", "")
    if not _SECRET.fullmatch(secret):
        return _problem_for(EmailChangeLinkInvalid())
    try:
        address = use(user_id, secret)
    except LINK_ERRORS as error:
        return _problem_for(error)
    return _page("email_signin/link_problem.html", title=title, message=done(address),
                 badge="done")


def _cross_site_refusal() -> Response:
    return _problem(
        gettext("Sign-in refused"),
        gettext("This sign-in was sent from another website. Open the link from your email again."),
        403,
    )




def posted_from_this_site() -> bool:
    """Refuse link posts a browser says came from elsewhere (login CSRF).

    Another site could otherwise post its own link and sign a visitor in to the
    wrong account. A real Origin must be OTP_LINK_BASE_URL's, the only origin
    links point at. Under `Referrer-Policy: no-referrer` browsers send
    `Origin: null` with form posts, so Sec-Fetch-Site decides then. Clients
    sending neither are not browsers: no victim's cookies are at stake.
    """
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        base = urlsplit(settings.link_base_url)
        if origin.rstrip("/").lower() != f"{base.scheme}://{base.netloc}".lower():
            return False
    site = request.headers.get("Sec-Fetch-Site")
    return site is None or site in ("same-origin", "none")


@bp.errorhandler(RateLimited)
def too_many_link_posts(error: RateLimited) -> Response:
    """A page, not JSON, for a person who pressed a link page's buttons too often."""
    return _problem_for(error)


@bp.errorhandler(redis.RedisError)
def store_unavailable(_error: redis.RedisError) -> Response:
    """A page, not JSON, for people who opened a link while the store is down."""
    log.error("redis unavailable: %s", type(_error).__name__)
    response = _problem(
        gettext("Sign-in is unavailable right now"),
        gettext("Please try again in a minute. Your link stays valid until it expires."),
        503,
    )
    response.headers["Retry-After"] = "5"
    return response
