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
from urllib.parse import urlsplit

import redis
from flask import Response, current_app, make_response, redirect, render_template, request, url_for

from . import login_links
from .blueprints import extension_blueprint
from .branding import accent_color, branding
from .errors import (
    AccountInactive,
    APIError,
    LinkExpired,
    LinkInvalid,
    LinkUsed,
    SignupClosed,
)
from .settings import settings
from .sign_in import complete_sign_in
from .state import API_BLUEPRINT, PAGES_BLUEPRINT

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
    return make_response(render_template(template, **branding(), **context), status)


def _problem(title: str, message: str, status: int) -> Response:
    return _page("email_signin/link_problem.html", status, title=title, message=message)


PROBLEM_TITLES: dict[type[APIError], str] = {
    LinkInvalid: "This link does not work",
    LinkExpired: "This link has expired",
    LinkUsed: "This link was already used",
    AccountInactive: "This account is deactivated",
    SignupClosed: "Sign-up is by invitation only",
}


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
    )


@bp.get("/theme.css")
def theme_css() -> Response:
    """The configured accent colour as a CSS variable (the CSP allows no inline style)."""
    response = make_response(f":root {{ --accent: {accent_color()}; }}\n")
    response.mimetype = "text/css"
    return response


@bp.get("/link/<tag>")
def link_page(tag: str) -> Response:
    """Confirmation page of an emailed link; consumes nothing (mail scanners prefetch links)."""
    if not _TAG.fullmatch(tag):
        return _problem(PROBLEM_TITLES[LinkInvalid], LinkInvalid.message, LinkInvalid.status)
    state = login_links.link_state(tag)
    if state.status == "used":
        return _problem(PROBLEM_TITLES[LinkUsed], LinkUsed.message, LinkUsed.status)
    if state.status != "pending":
        return _problem(PROBLEM_TITLES[LinkExpired], LinkExpired.message, LinkExpired.status)
    minutes = max(1, -(-state.value // 60))
    return _page("email_signin/link_confirm.html", tag=tag, minutes=minutes)


@bp.post("/link/<tag>")
def use_link(tag: str) -> Response:
    """Sign this browser in with the link's secret, then show the signed-in page."""
    if not posted_from_this_site():
        return _problem(
            "Sign-in refused",
            "This sign-in was sent from another website. Open the link from your email again.",
            403,
        )
    secret = request.form.get("secret", "")
    if not (_TAG.fullmatch(tag) and _SECRET.fullmatch(secret)):
        return _problem(PROBLEM_TITLES[LinkInvalid], LinkInvalid.message, LinkInvalid.status)
    try:
        signed_in = complete_sign_in(login_links.use_login_link(tag, secret))
    except (LinkInvalid, LinkExpired, LinkUsed, AccountInactive, SignupClosed) as error:
        return _problem(PROBLEM_TITLES[type(error)], error.message, error.status)
    response = make_response(redirect(url_for(".sign_in_page"), code=303))
    signed_in.set_cookies(response)
    return response


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


@bp.errorhandler(redis.RedisError)
def store_unavailable(_error: redis.RedisError) -> Response:
    """A page, not JSON, for people who opened a link while the store is down."""
    log.error("redis unavailable: %s", type(_error).__name__)
    response = _problem(
        "Sign-in is unavailable right now",
        "Please try again in a minute. Your link stays valid until it expires.",
        503,
    )
    response.headers["Retry-After"] = "5"
    return response
