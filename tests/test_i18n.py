"""Every page, email and error message in the user's language.

The catalogues are checked against the code itself: a message added, changed or
removed without updating every catalogue (`make messages`, then translate) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from flask_email_signin.i18n import CATALOGUES, DOMAIN
from support import AuthActions, error_code, new_email

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"%\(\w+\)s|\{\w+\}")
RIGHT_TO_LEFT = {"ar", "he", "fa", "ur"}


def catalogue_paths() -> list[Path]:
    return sorted(CATALOGUES.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def read(path: Path, locale: str | None = None):  # type: ignore[no-untyped-def]
    with path.open("rb") as file:
        return read_po(file, locale=locale)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The msgids the code and templates use today, extracted as `make messages` does."""
    template = tmp_path_factory.mktemp("pot") / "messages.pot"
    CommandLineInterface().run([
        "pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l",
        "-k", "lazy_gettext", "--no-location", "-o", str(template), str(ROOT),
    ])
    return {m.id if isinstance(m.id, str) else m.id[0] for m in read(template) if m.id}


def test_at_least_ten_locales_ship_one_of_them_right_to_left() -> None:
    locales = {path.parent.parent.name for path in catalogue_paths()}
    assert len(locales) >= 10, locales
    assert locales & RIGHT_TO_LEFT


def test_the_committed_template_matches_the_code(extracted: set[str]) -> None:
    committed = read(CATALOGUES / f"{DOMAIN}.pot")
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in committed if m.id}
    assert ids == extracted, "run `make messages`"


@pytest.mark.parametrize("path", catalogue_paths(), ids=lambda p: p.parent.parent.name)
def test_every_catalogue_is_complete_current_and_keeps_its_placeholders(
    path: Path, extracted: set[str]
) -> None:
    locale = path.parent.parent.name
    catalogue = read(path, locale)
    problems = []
    ids = set()
    for message in catalogue:
        if not message.id:
            continue
        ids.add(message.id if isinstance(message.id, str) else message.id[0])
        sources = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {sources[0]!r}")
        if len(strings) != catalogue.num_plurals and isinstance(message.id, tuple):
            problems.append(f"{len(strings)} plural forms, not {catalogue.num_plurals}")
        wanted = set(PLACEHOLDER.findall(" ".join(sources)))
        for string in strings:
            if not string:
                problems.append(f"untranslated: {sources[0]!r}")
            elif set(PLACEHOLDER.findall(string)) - wanted:
                problems.append(f"unknown placeholder in {string!r}")
            elif not (wanted - {"%(num)s"}) <= set(PLACEHOLDER.findall(string)):
                problems.append(f"lost a placeholder: {sources[0]!r} -> {string!r}")
    assert not catalogue.obsolete, f"obsolete entries: {list(catalogue.obsolete)[:3]}"
    assert ids == extracted, f"stale: missing {extracted - ids}, extra {ids - extracted}"
    assert problems == []


def test_errors_and_messages_follow_accept_language(client: FlaskClient) -> None:
    body = {"email": new_email(), "otp": "123456"}
    german = client.post("/auth/verify-otp", json=body, headers={"Accept-Language": "de-DE,de"})
    assert error_code(german) == "otp_expired"  # the code stays stable...
    assert german.get_json()["error"]["message"] == (
        "Dieser Code ist abgelaufen. Fordern Sie einen neuen an."
    )
    english = client.post("/auth/verify-otp", json=body, headers={"Accept-Language": "xx"})
    assert english.get_json()["error"]["message"] == "That code has expired. Request a new one."
    chinese = client.post("/auth/verify-otp", json=body, headers={"Accept-Language": "zh-CN"})
    assert "验证码" in chinese.get_json()["error"]["message"]


def test_the_page_is_laid_out_right_to_left_in_arabic(client: FlaskClient) -> None:
    html = client.get("/auth/login", headers={"Accept-Language": "ar"}).get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in html
    assert "تسجيل الدخول" in html
    assert '<html lang="de" dir="ltr">' in client.get(
        "/auth/login", headers={"Accept-Language": "de"}
    ).get_data(as_text=True)


def test_a_stored_preference_wins_over_the_browser(auth: AuthActions, email: str) -> None:
    auth.sign_in(email)
    client = auth.client
    french = {"Accept-Language": "fr"}
    bad = client.patch("/auth/me", json={"locale": "tlh"}, headers=auth.csrf_header())
    assert bad.status_code == 422 and "locale" in bad.get_json()["error"]["details"]["fields"]
    updated = client.patch("/auth/me", json={"locale": "de"}, headers=auth.csrf_header())
    assert updated.status_code == 200 and updated.get_json()["locale"] == "de"
    # Tokens carry the language from the next refresh on.
    assert client.post("/auth/refresh", headers=auth.csrf_header("refresh")).status_code == 200
    missing = client.delete("/auth/sessions/nope", headers={**auth.csrf_header(), **french})
    assert missing.status_code == 404
    assert missing.get_json()["error"]["message"] == "Sie haben keine aktive Sitzung mit dieser ID."
    assert client.get("/auth/me").get_json()["locale"] == "de"
    # Null: the browser decides again.
    cleared = client.patch("/auth/me", json={"locale": None}, headers=auth.csrf_header())
    assert cleared.get_json()["locale"] is None
    client.post("/auth/refresh", headers=auth.csrf_header("refresh"))
    again = client.delete("/auth/sessions/nope", headers={**auth.csrf_header(), **french})
    assert again.get_json()["error"]["message"] == (
        "Vous n'avez aucune session active avec cet identifiant."
    )


def text_and_html(auth: AuthActions, email: str, count: int = 1) -> tuple[str, str, str]:
    message = auth.inbox.wait_for(email, count=count)[count - 1]
    return (
        str(message["Subject"]),
        message.get_body(preferencelist=("plain",)).get_content(),
        message.get_body(preferencelist=("html",)).get_content(),
    )


def test_the_email_is_written_in_the_language_of_the_request(
    auth: AuthActions
) -> None:
    german, arabic = new_email(), new_email()
    auth.client.post("/auth/request-otp", json={"email": german},
                     headers={"Accept-Language": "de-CH, de;q=0.9, en;q=0.5"})
    auth.client.post("/auth/request-otp", json={"email": arabic},
                     headers={"Accept-Language": "ar-EG"})
    subject, text, html = text_and_html(auth, german)
    assert subject == "Ihr Anmeldecode für Passwordless"
    assert "Ihr Anmeldecode lautet:" in text
    assert '<html lang="de" dir="ltr">' in html
    subject, text, html = text_and_html(auth, arabic)
    assert re.search(r"[\u0600-\u06FF]", subject) and re.search(r"[\u0600-\u06FF]", text)
    assert '<html lang="ar" dir="rtl">' in html


def test_a_stored_preference_decides_the_email_language(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)
    auth.sign_in(email)
    auth.client.patch("/auth/me", json={"locale": "fr"}, headers=auth.csrf_header())
    asked = auth.client.post("/auth/request-otp", json={"email": email},
                             headers={"Accept-Language": "de"})
    assert asked.status_code == 202
    _subject, text, _html = text_and_html(auth, email, count=2)
    assert "Votre code de connexion est\u00a0:" in text  # a no-break space, as French sets it


def test_the_text_part_ends_with_the_origin_bound_code_line(
    auth: AuthActions, email: str
) -> None:
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    subject, text, html = text_and_html(auth, email)
    assert text.rstrip("\n").splitlines()[-1] == f"@localhost #{code}"
    assert code not in subject  # off by default: lock screens show subjects
    # One selectable, monospaced run of digits in the HTML part.
    block = re.search(rf"<div style=\"([^\"]*)\">{code}</div>", html)
    assert block and "monospace" in block.group(1) and "user-select:all" in block.group(1)


def test_the_code_in_the_subject_is_an_option(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_CODE_IN_SUBJECT", True)
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    subject, _text, _html = text_and_html(auth, email)
    assert subject.startswith(code)


def test_a_host_adds_a_locale_and_overrides_a_message(
    suite_config: type, tmp_path: Path
) -> None:
    """OTP_TRANSLATION_DIRECTORIES: a Swedish catalogue of the host's, and a German
    message reworded; everything else stays the built-in German."""
    for locale, entries in {
        "sv": {"That code has expired. Request a new one.": "Koden har gått ut."},
        "de": {"That code has expired. Request a new one.": "Abgelaufen, sagt der Host."},
    }.items():
        folder = tmp_path / "host-translations" / locale / "LC_MESSAGES"
        folder.mkdir(parents=True)
        source = 'msgid ""\nmsgstr "Content-Type: text/plain; charset=utf-8\\n"\n\n' + "".join(
            f'msgid "{key}"\nmsgstr "{value}"\n\n' for key, value in entries.items()
        )
        (folder / f"{DOMAIN}.po").write_text(source)
        with (folder / f"{DOMAIN}.po").open("rb") as po, (folder / f"{DOMAIN}.mo").open("wb") as mo:
            write_mo(mo, read_po(po, locale=locale))
    config = type("HostTranslations", (suite_config,), {
        "OTP_TRANSLATION_DIRECTORIES": [str(tmp_path / "host-translations")],
    })
    host: Flask = create_app(config)
    try:
        client = host.test_client()
        body = {"email": new_email(), "otp": "123456"}
        for language, expected in (("sv", "Koden har gått ut."),
                                   ("de", "Abgelaufen, sagt der Host.")):
            answer = client.post("/auth/verify-otp", json=body,
                                 headers={"Accept-Language": language})
            assert answer.get_json()["error"]["message"] == expected
        german_page = client.get("/auth/login", headers={"Accept-Language": "de"})
        assert "Anmelden" in german_page.get_data(as_text=True)  # the rest: built-in German
    finally:
        host.extensions["email_signin"].redis.close()
