"""What the sign-in page and emails show of the host app: name, colour, support address."""

from __future__ import annotations

import logging
import re
from typing import Any

from .settings import settings

log = logging.getLogger(__name__)
DEFAULT_ACCENT_COLOR = "#4f46e5"
_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")


def accent_color() -> str:
    """OTP_ACCENT_COLOR when it is a hex colour: it lands in CSS, so nothing else is let in."""
    value = settings.accent_color or DEFAULT_ACCENT_COLOR
    if _HEX_COLOR.fullmatch(value):
        return value
    log.warning("OTP_ACCENT_COLOR is not a #rgb or #rrggbb colour; using the default")
    return DEFAULT_ACCENT_COLOR


def branding() -> dict[str, Any]:
    """Template context shared by the pages and the emails."""
    return {
        "app_name": settings.app_name,
        "accent_color": accent_color(),
        "support_email": settings.support_email,
    }
