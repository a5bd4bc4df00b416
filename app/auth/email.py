"""Composition of the sign-in email (templates `email/login_code.{txt,html}`).

The built-in templates live in the auth blueprint's folder; a file with the
same name in `OTP_TEMPLATE_FOLDER` (or the host app's own template folder)
replaces them, because Flask's loader searches the app's folder first.
"""

from __future__ import annotations

import math
import time

from flask import current_app, render_template

from ..branding import branding
from ..email import send_email
from .codes import email_tag

LINK_ENDPOINT = "web.link_page"


def login_link_url(email: str, secret: str) -> str:
    """The one-click link: built from OTP_LINK_BASE_URL, never from a request's Host.

    The secret rides in the fragment, which browsers never send to a server, so
    it stays out of access logs, proxies and Referer headers; the confirmation
    page's script posts it. The path names the email only by its keyed tag.
    """
    base = str(current_app.config["OTP_LINK_BASE_URL"]).rstrip("/")
    path = current_app.url_map.bind("").build(LINK_ENDPOINT, {"tag": email_tag(email)})
    return f"{base}{path}#{secret}"


def send_login_code_email(
    email: str, code: str, expires_at: int, link_secret: str | None = None
) -> None:
    minutes = max(1, math.ceil((expires_at - time.time()) / 60))
    context = {
        **branding(),
        "code": code,
        "minutes": minutes,
        "email": email,
        "link_url": login_link_url(email, link_secret) if link_secret else None,
    }
    app_name = context["app_name"]
    send_email(
        # No code in the subject: subjects end up in mail logs and previews.
        subject=f"Your {app_name} sign-in code",
        recipient=email,
        text_body=render_template("email/login_code.txt", **context),
        html_body=render_template("email/login_code.html", **context),
    )
