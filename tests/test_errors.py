"""Every error is JSON in one envelope, and bad input changes nothing."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from live_stack import WebNode
from werkzeug.test import EnvironBuilder, run_wsgi_app

from support import error_code


def test_unknown_route_is_json_404(client: FlaskClient) -> None:
    response = client.get("/auth/nope")
    assert response.status_code == 404 and error_code(response) == "not_found"


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.get("/auth/request-otp")
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_body_over_max_content_length_is_413(client: FlaskClient, app: Flask) -> None:
    body = '{"email": "' + "a" * app.config["MAX_CONTENT_LENGTH"] + '@example.com"}'
    response = client.post(
        "/auth/request-otp", data=body, content_type="application/json"
    )
    assert response.status_code == 413 and error_code(response) == "payload_too_large"


def post_streamed(app: Flask, path: str, body: bytes) -> tuple[int, str]:
    """POST a body that comes chunked, as a WSGI server (gunicorn) hands it over: no
    Content-Length, the stream marked as terminated by the server. Returns (status, code)."""
    environ = EnvironBuilder(
        path=path, method="POST", data=body, content_type="application/json"
    ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    chunks, status, _headers = run_wsgi_app(app, environ, buffered=True)
    answer = json.loads(b"".join(chunks))
    return int(status.split()[0]), str(answer.get("error", {}).get("code", "")) \
        if isinstance(answer, dict) else ""


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "' + b"a" * 64 * 1024 + b'@example.com"}',
        # Valid JSON in the first 16 KiB, then more: once cut at the limit and accepted.
        b'{"email": "a@example.com"}' + b" " * (16 * 1024) + b"x" * (34 * 1024),
    ],
    ids=["invalid", "valid-prefix"],
)
def test_a_streamed_body_over_max_content_length_is_413(app: Flask, body: bytes) -> None:
    assert post_streamed(app, "/auth/request-otp", body) == (413, "payload_too_large")


@pytest.mark.parametrize("padding", [0, 16 * 1024 - 27], ids=["small", "exactly-the-limit"])
def test_a_streamed_body_within_the_limit_is_read_whole(app: Flask, padding: int) -> None:
    body = b'{"email": "not an address"}' + b" " * padding
    assert len(body) <= app.config["MAX_CONTENT_LENGTH"]
    assert post_streamed(app, "/auth/request-otp", body) == (422, "validation_failed")


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ('{"email": ', "application/json", 400, "malformed_json"),
        ("\xff\xfe", "application/json", 400, "malformed_json"),
        ("email=a@example.com", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('{"email": "a@example.com"}', "text/plain", 415, "unsupported_media_type"),
        ("", None, 415, "unsupported_media_type"),
        ('["a@example.com"]', "application/json", 422, "validation_failed"),
        ('"a@example.com"', "application/json", 422, "validation_failed"),
        ("null", "application/json", 422, "validation_failed"),
        ("42", "application/json", 422, "validation_failed"),
        ("{}", "application/json", 422, "validation_failed"),
        ('{"email": null}', "application/json", 422, "validation_failed"),
        ('{"email": 42}', "application/json", 422, "validation_failed"),
        ('{"email": ["a@example.com"]}', "application/json", 422, "validation_failed"),
        ('{"email": "a@example.com", "admin": true}', "application/json", 422, "validation_failed"),
    ],
)
def test_bad_bodies_get_clear_json_errors(
    client: FlaskClient, data: str, content_type: str | None, status: int, code: str
) -> None:
    response = client.post("/auth/request-otp", data=data, content_type=content_type)
    assert response.status_code == status
    assert error_code(response) == code
    assert response.get_json()["error"]["message"]


def test_unexpected_errors_are_json_500_without_details(suite_config: type) -> None:
    from app import create_app

    app = create_app(suite_config)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500 and error_code(response) == "internal_error"
    assert b"secret internals" not in response.data


def chunks_of(body: bytes, size: int = 4096) -> list[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)]


@pytest.mark.live
@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "' + b"a" * 64 * 1024 + b'@example.com"}',
        # Valid JSON in the first 16 KiB, then more: once cut at the limit and accepted.
        b'{"email": "a@example.com"}' + b" " * (16 * 1024) + b"x" * (34 * 1024),
    ],
    ids=["64-kb", "valid-first-16-kb"],
)
def test_a_chunked_body_over_the_limit_is_413_through_gunicorn(
    served: WebNode, body: bytes
) -> None:
    """A real chunked request (Transfer-Encoding: chunked, no Content-Length) to gunicorn."""
    answer = served.exchange(
        "POST", "/auth/request-otp", chunks_of(body), {"Content-Type": "application/json"}
    )
    assert (answer.status, answer.error_code()) == (413, "payload_too_large")


@pytest.mark.live
def test_a_chunked_body_within_the_limit_is_read_whole_through_gunicorn(
    served: WebNode, app: Flask
) -> None:
    """Up to MAX_CONTENT_LENGTH exactly, as with Content-Length: the body is read, not refused."""
    head = b'{"email": "not an address"}'
    body = head + b" " * (app.config["MAX_CONTENT_LENGTH"] - len(head))
    answer = served.exchange(
        "POST", "/auth/request-otp", chunks_of(body), {"Content-Type": "application/json"}
    )
    assert (answer.status, answer.error_code()) == (422, "validation_failed")


@pytest.mark.live
@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        # A 20 KB bearer token passes gunicorn's header limit and is refused by the app.
        ("/auth/me", {"Authorization": "Bearer " + "x" * 20_000}, 401, "token_invalid"),
        # A 20 KB cookie: browsers keep at most ~4 KB per cookie, proxies far more.
        ("/auth/me", {"Cookie": "access_token=" + "x" * 20_000}, 401, "token_invalid"),
        # A 7 KB query string: request lines up to 8 KiB reach the app.
        ("/auth/me?" + "q" * 7_000, {}, 401, "token_missing"),
        # 150 headers (gunicorn's default limit is 100).
        ("/auth/me", {f"X-Extra-{n}": "1" for n in range(150)}, 401, "token_missing"),
    ],
    ids=["20-kb-token", "20-kb-cookie", "7-kb-request-line", "150-headers"],
)
def test_large_but_reasonable_requests_get_the_json_envelope_through_gunicorn(
    served: WebNode, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    answer = served.exchange("GET", path, headers=headers)
    assert (answer.status, answer.error_code()) == (status, code)


@pytest.mark.live
@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/auth/me", {"Authorization": "Bearer " + "x" * 40_000}, 431),
        ("/auth/me?" + "q" * 9_000, {}, 414),
        ("/auth/me", {f"X-Extra-{n}": "1" for n in range(250)}, 431),
    ],
    ids=["40-kb-header", "9-kb-request-line", "250-headers"],
)
def test_absurd_requests_still_get_gunicorns_own_page(
    served: WebNode, path: str, headers: dict[str, str], status: int
) -> None:
    """The limits the README documents: past them gunicorn answers before the app runs."""
    answer = served.exchange("GET", path, headers=headers)
    assert answer.status == status
    assert not (answer.header("Content-Type") or "").startswith("application/json")
