"""Every page, email and error message in the person's language (Flask-Babel, own domain).

The extension's messages live in their own gettext domain, `flask_email_signin`,
so they never mix with a host's `messages` catalogues. Catalogues are `.po`
files under `translations/`, compiled to `.mo` when the package is installed
(Makefile) or built (setup.py). A host adds a locale, or overrides some
messages, with catalogues of the same domain in OTP_TRANSLATION_DIRECTORIES:
their messages win over ours.

The locale of a request: the signed-in user's stored preference (the `loc`
claim of a token verified in this request), else the best match of
Accept-Language among the locales with a catalogue, else Flask-Babel's default
(BABEL_DEFAULT_LOCALE, "en"). A host that runs Flask-Babel itself keeps its
own locale selector; it may call `select_locale` from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from gettext import NullTranslations
from pathlib import Path
from typing import Any

from babel import Locale
from flask import Flask, current_app, g, has_app_context, has_request_context, request
from flask_babel import Babel, Domain, force_locale, get_locale
from flask_babel.speaklater import LazyString
from markupsafe import Markup, escape

from .state import EXTENSION_KEY

DOMAIN = "flask_email_signin"
CATALOGUES = Path(__file__).parent / "translations"
LOCALE_CLAIM = "loc"


@dataclass(frozen=True)
class Localization:
    """One app's catalogues: the domain object (it caches loaded catalogues) and its locales."""

    domain: Domain
    locales: tuple[str, ...]
    default: str
    # What Accept-Language is matched against: every locale, and "zh_CN" for "zh_Hans_CN".
    accept_names: dict[str, str]
    # Parsed once: Flask-Babel takes a Locale from the selector as it is, where parsing a
    # name again on every request costs more than the rest of the choice.
    parsed: dict[str, Locale]
    # Accept-Language header -> chosen locale: headers repeat, matching them costs.
    by_header: dict[str, Locale | None]


def compiled_locales(directories: Iterable[Path]) -> set[str]:
    return {
        mo.parent.parent.name
        for directory in directories
        for mo in directory.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")
    }


def init_localization(app: Flask) -> Localization:
    """Bind Flask-Babel (unless the host did) and load this app's catalogue directories."""
    if "babel" not in app.extensions:
        # configure_jinja=False: the host's Jinja environment is left as it was;
        # our templates get their gettext functions from `template_context`.
        Babel(app, locale_selector=select_locale, configure_jinja=False)
    default = str(app.extensions["babel"].default_locale)
    host_directories = [Path(app.root_path, d) for d in app.config["OTP_TRANSLATION_DIRECTORIES"]]
    directories = [CATALOGUES, *host_directories]
    locales = sorted(compiled_locales(directories) | {default})
    accept_names = {name: name for name in locales}
    for name in locales:
        parsed = Locale.parse(name)
        if parsed.script and parsed.territory:  # browsers say zh-CN, not zh-Hans-CN
            accept_names.setdefault(f"{parsed.language}_{parsed.territory}", name)
    return Localization(
        domain=Domain(translation_directories=[str(d) for d in directories], domain=DOMAIN),
        locales=tuple(locales),
        default=default,
        accept_names=accept_names,
        parsed={name: Locale.parse(name) for name in locales},
        by_header={},
    )


def localization() -> Localization:
    return current_app.extensions[EXTENSION_KEY].localization


MAX_REMEMBERED_HEADERS = 512


def select_locale() -> Locale | None:
    """The stored preference of a verified token, else Accept-Language, else None (default)."""
    if not has_request_context():
        return None
    known = localization()
    claims = g.get("_jwt_extended_jwt")
    preferred = claims.get(LOCALE_CLAIM) if isinstance(claims, dict) else None
    if preferred in known.parsed:
        return known.parsed[preferred]
    header = request.headers.get("Accept-Language", "")
    try:
        return known.by_header[header]
    except KeyError:
        pass
    best = request.accept_languages.best_match(known.accept_names)
    chosen = known.parsed[known.accept_names[best]] if best else None
    if len(known.by_header) < MAX_REMEMBERED_HEADERS:
        known.by_header[header] = chosen
    return chosen


def available_locale(value: str | None) -> str | None:
    """`value` as one of the app's locale names (case and `-`/`_` forgiven), or None."""
    if not value:
        return None
    wanted = value.replace("-", "_").lower()
    for name in localization().locales:
        if name.lower() == wanted:
            return name
    return None


def _translations() -> Any:
    """This request's (or forced locale's) catalogue; the messages as written outside an app."""
    if not has_app_context() or EXTENSION_KEY not in current_app.extensions:
        return NullTranslations()
    return localization().domain.get_translations()


def gettext(message: str, **variables: Any) -> str:
    text = _translations().gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    variables.setdefault("num", num)
    return _translations().ngettext(singular, plural, num) % variables


def lazy_gettext(message: str, **variables: Any) -> LazyString:
    """Translated when rendered (class-level messages are defined before any request)."""
    return LazyString(gettext, message, **variables)


def _markup_gettext(message: str, **variables: Any) -> Markup:
    """For HTML templates: the translation is escaped, then variables are escaped into it
    (a Markup variable, such as an element the page's script fills, goes in as is)."""
    return escape(gettext(message)) % variables if variables else escape(gettext(message))


def _markup_ngettext(singular: str, plural: str, num: int, **variables: Any) -> Markup:
    variables.setdefault("num", num)
    return escape(_translations().ngettext(singular, plural, num)) % variables


def current_locale() -> Locale:
    return get_locale() or Locale.parse(localization().default)


def locale_name() -> str:
    """This request's locale as stored and carried to the worker ("pt_BR")."""
    return str(current_locale())  # a Locale made once per locale (see select_locale)


def template_context(*, html: bool = True) -> dict[str, Any]:
    """What every extension template gets: `_`, `ngettext`, the locale and its direction."""
    locale = current_locale()
    return {
        "_": _markup_gettext if html else gettext,
        "ngettext": _markup_ngettext if html else ngettext,
        "locale_tag": str(locale).replace("_", "-"),
        "text_direction": "rtl" if locale.character_order == "right-to-left" else "ltr",
    }


__all__ = [
    "DOMAIN",
    "LOCALE_CLAIM",
    "available_locale",
    "current_locale",
    "force_locale",
    "gettext",
    "init_localization",
    "lazy_gettext",
    "ngettext",
    "select_locale",
    "template_context",
]
