"""Composition of the sign-in email (templates `email_signin/email/login_code.{txt,html}`).

The built-in templates live in the extension's template folder; a file at the
same path in the host app's own template folder replaces them, because Flask's
loader searches the app's folder before any blueprint's.
"""

from __future__ import annotations

import math
import time

from flask import render_template

from .branding import branding
from .login_links import login_link_url
from .mail_transport import send_email


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
        text_body=render_template("email_signin/email/login_code.txt", **context),
        html_body=render_template("email_signin/email/login_code.html", **context),
    )
