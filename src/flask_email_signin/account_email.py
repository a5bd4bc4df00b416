"""Composition of the account emails: confirming a new address, and the notices.

One pair of templates (`email_signin/email/account_notice.{txt,html}`) lays out
every kind: a heading, paragraphs, an optional code and an optional button. A
host overrides them by path, as the sign-in email. Written in the account's
language (or the asking request's), like the sign-in email.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import render_template
from markupsafe import Markup

from .branding import branding
from .i18n import available_locale, force_locale, gettext, localization, ngettext, template_context
from .mail_transport import send_email


def _content(kind: str, app: str, fields: dict[str, Any]) -> dict[str, Any]:
    if kind == "email_change_confirm":
        minutes = max(1, math.ceil((fields["expires_at"] - time.time()) / 60))
        return {
            "subject": gettext("Confirm your new %(app)s address", app=app),
            "heading": gettext("Confirm your new address"),
            "paragraphs": [
                gettext("Enter this code where you asked to change your %(app)s address:",
                        app=app),
            ],
            "code": fields["code"],
            "button": gettext("Confirm this address"),
            "after": [
                ngettext("The code and the link work once, for %(num)s minute.",
                         "The code and the link work once, for %(num)s minutes.", minutes),
            ],
            "footer": gettext("If you did not ask for this, ignore this email: "
                              "nothing changes without it."),
        }
    if kind == "email_change_notice":
        hours = int(fields["hours"])
        return {
            "subject": gettext("Your %(app)s address was changed", app=app),
            "heading": gettext("Your address was changed"),
            "paragraphs": [
                gettext("Your %(app)s account now uses %(address)s instead of this address.",
                        app=app, address=fields["new_email"]),
                ngettext(
                    "If this wasn't you, this link puts your address back and signs out "
                    "every device. It works once, for %(num)s hour.",
                    "If this wasn't you, this link puts your address back and signs out "
                    "every device. It works once, for %(num)s hours.", hours),
            ],
            "button": gettext("This wasn't me"),
            "after": [],
            "footer": gettext("If it was you, there is nothing to do."),
        }
    if kind == "email_change_address_taken":
        return {
            "subject": gettext("Someone tried to use this address on %(app)s", app=app),
            "heading": gettext("This address already has an account"),
            "paragraphs": [
                gettext("Someone asked to move another %(app)s account to this address. "
                        "This address has its own account, so nothing changed.", app=app),
            ],
            "button": None,
            "after": [],
            "footer": gettext("If it was you, sign in with this address instead. "
                              "If not, you can ignore this email."),
        }
    raise ValueError(f"unknown account email: {kind}")


def compose_and_send(kind: str, email: str, locale: str, fields: dict[str, Any]) -> None:
    """`fields`: what the kind shows (code, link_url, new_email, hours) and `expires_at`."""
    with force_locale(available_locale(locale) or localization().default):
        context = branding()
        content = _content(kind, context["app_name"], fields)
        context.update(content, link_url=fields.get("link_url") or None,
                       code=content.get("code"))
        context["support_mail_link"] = Markup(
            '<a href="mailto:{0}" style="color:{1};">{0}</a>'
        ).format(context["support_email"] or "", context["accent_color"])
        send_email(
            subject=content["subject"],
            recipient=email,
            text_body=render_template(
                "email_signin/email/account_notice.txt", **context,
                **template_context(html=False),
            ),
            html_body=render_template(
                "email_signin/email/account_notice.html", **context, **template_context()
            ),
        )
