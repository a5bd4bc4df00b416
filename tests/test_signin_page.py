"""The sign-in page as served: markup, headers and assets (the browser tests drive it)."""

from __future__ import annotations

import json
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

PAGES = ["/", "/auth/login"]


@pytest.mark.parametrize("path", PAGES)
def test_the_page_sends_a_strict_content_security_policy(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'self'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
def test_the_page_has_no_inline_script_or_style(client: FlaskClient, path: str) -> None:
    html = client.get(path).get_data(as_text=True)
    # JSON data blocks are never run (CSP does not apply to them): the messages in the page's
    # language. Every script that runs comes from the extension's own files.
    data_block = re.compile(
        r'<script type="application/json" id="page-messages">(.*?)</script>', re.S
    )
    assert isinstance(json.loads(data_block.search(html).group(1)), dict)  # type: ignore[union-attr]
    html = data_block.sub("", html)
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts and all(body.strip() == "" for body in scripts)
    assert all('src="/auth/assets/' in tag for tag in re.findall(r"<script\b[^>]*>", html))
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html


def test_the_code_input_is_a_labelled_one_time_code_field(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    code_input = re.search(r"<input id=\"code\"[^>]*>", html, flags=re.S)
    assert code_input is not None
    tag = code_input.group(0)
    assert 'autocomplete="one-time-code"' in tag and 'inputmode="numeric"' in tag
    assert "maxlength" not in tag  # a pasted "123 456" must not be cut before it is cleaned
    for field in ("email", "code"):
        assert f'<label for="{field}">' in html


def test_the_assets_are_served_under_the_same_policy(client: FlaskClient) -> None:
    for asset, mimetype in (
        ("/auth/assets/signin.js", "text/javascript"),
        ("/auth/assets/link.js", "text/javascript"),
        ("/auth/assets/signin.css", "text/css"),
        ("/auth/theme.css", "text/css"),
    ):
        response = client.get(asset)
        assert response.status_code == 200 and response.mimetype == mimetype, asset
        response.close()


def test_the_theme_carries_the_accent_colour_and_refuses_anything_else(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "OTP_ACCENT_COLOR", "#0a7d5a")
    assert b"--accent: #0a7d5a;" in client.get("/auth/theme.css").data
    monkeypatch.setitem(app.config, "OTP_ACCENT_COLOR", "red; } body { display: none")
    css = client.get("/auth/theme.css").data
    assert b"display" not in css and b"--accent: #4f46e5;" in css


def test_the_page_shows_the_configured_name_and_support_address(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "OTP_APP_NAME", "Acme <Notes>")
    monkeypatch.setitem(app.config, "OTP_SUPPORT_EMAIL", "help@acme.example")
    html = client.get("/").get_data(as_text=True)
    assert "Acme &lt;Notes&gt;" in html and "Acme <Notes>" not in html
    assert 'href="mailto:help@acme.example"' in html
