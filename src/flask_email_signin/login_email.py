"""Composition of the sign-in email (templates `email_signin/email/login_code.{txt,html}`).

The built-in templates live in the extension's template folder; a file at the
same path in the host app's own template folder replaces them, because Flask's
loader searches the app's folder before any blueprint's. The email is written
in `locale` (the account's, or the asking request's; see tasks), when the app
has a catalogue for it.
"""

from __future__ import annotations

import math
import time
from urllib.parse import urlsplit

from flask import render_template
from markupsafe import Markup

from .branding import branding
from .i18n import available_locale, force_locale, gettext, localization, template_context
from .login_links import login_link_url
from .mail_transport import send_email
from .settings import settings


def autofill_line(code: str) -> str:
    """The origin-bound one-time code line (WICG sms-one-time-codes: `@host #code`), last
    in the text part, so browsers offer the code on the link's site and nowhere else."""
    host = urlsplit(settings.link_base_url).hostname or ""
    return f"@{host} #{code}" if host else ""


def send_login_code_email(
    email: str, code: str, expires_at: int, link_secret: str | None = None, *, locale: str = ""
) -> None:
    with force_locale(available_locale(locale) or localization().default):
        minutes = max(1, math.ceil((expires_at - time.time()) / 60))
        context = {
            **branding(),
            "code": code,
            "minutes": minutes,
            "email": email,
            "link_url": login_link_url(email, link_secret) if link_secret else None,
            "autofill_line": autofill_line(code),
        }
        app_name, accent = context["app_name"], context["accent_color"]
        context["support_mail_link"] = Markup(
            '<a href="mailto:{0}" style="color:{1};">{0}</a>'
        ).format(context["support_email"] or "", accent)
        if settings.code_in_subject:
            # Opt-in: lock screens, previews and mail logs then show the code.
            subject = gettext("%(code)s is your %(app)s sign-in code", code=code, app=app_name)
        else:
            subject = gettext("Your %(app)s sign-in code", app=app_name)
        send_email(
            subject=subject,
            recipient=email,
            text_body=render_template(
                "email_signin/email/login_code.txt", **context, **template_context(html=False)
            ),
            html_body=render_template(
                "email_signin/email/login_code.html", **context, **template_context()
            ),
        )
