""""Chrome on macOS": a browser as its owner would name it, from its User-Agent header.

Parsed with ua-parser (the maintained uap-core rules), lazily: the rules are
compiled on the first call of a process.
"""

from __future__ import annotations

from ua_parser import parse as parse_user_agent

from .i18n import gettext

OS_NAMES = {"Mac OS X": "macOS"}


def describe_device(user_agent: str) -> str:
    parsed = parse_user_agent(user_agent) if user_agent else None
    browser = parsed.user_agent.family if parsed and parsed.user_agent else ""
    system = parsed.os.family if parsed and parsed.os else ""
    browser = "" if browser == "Other" else browser
    system = OS_NAMES.get(system, system) if system != "Other" else ""
    if browser and system:
        return gettext("%(browser)s on %(system)s", browser=browser, system=system)
    return browser or system or gettext("An unknown browser")
