"""POST /auth/request-otp: validation, storage, cooldown, replacement."""

from __future__ import annotations

import pytest
import redis
from flask import Flask
from live_stack import WebNode
from marshmallow import Schema

from app import create_app
from flask_email_signin import schemas
from support import AuthActions, error_code, make_config, new_email, other_code


def redis_dump(app: Flask) -> bytes:
    """Every key and value in the app's Redis database, as one blob."""
    client = redis.Redis.from_url(app.config["OTP_REDIS_URL"])
    blob = b""
    for key in client.scan_iter():
        if key.startswith(b"LIMITS:"):
            continue  # per-IP rate-limit counters count every request, valid or not
        kind = client.type(key)
        blob += key
        if kind == b"hash":
            blob += b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"string":
            blob += client.get(key) or b""
        elif kind == b"set":
            blob += b"".join(client.smembers(key))
    return blob


def test_the_code_is_stored_only_as_a_keyed_hash(auth: AuthActions, email: str) -> None:
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    dump = redis_dump(auth.app)
    assert code.encode() not in dump
    assert email.encode() not in dump


def test_a_second_request_inside_the_cooldown_is_refused(auth: AuthActions, email: str) -> None:
    assert auth.request_code(email).status_code == 202
    response = auth.request_code(email)
    assert response.status_code == 429
    assert error_code(response) == "resend_cooldown"
    assert 55 <= int(response.headers["Retry-After"]) <= 60


def test_a_new_code_replaces_the_previous_one(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_RESEND_COOLDOWN_SECONDS", 0)
    assert auth.request_code(email).status_code == 202
    first = auth.read_code_from_inbox(email, count=1)
    assert auth.request_code(email).status_code == 202
    second = auth.read_code_from_inbox(email, count=2)
    if first != second:  # a one-in-a-million draw may repeat the code
        old = auth.verify(email, first)
        # Told apart from a wrong code, and it costs a try all the same.
        assert old.status_code == 401 and error_code(old) == "otp_superseded"
        assert old.get_json()["error"]["details"]["attempts_left"] == 4
        assert "newer code" in old.get_json()["error"]["message"]
    assert auth.verify(email, second).status_code == 200


def test_the_address_is_normalised(auth: AuthActions) -> None:
    """Case, and the spaces a pasted address brings along, do not make another account."""
    email = new_email()
    shouted = email.upper().replace("@EXAMPLE.COM", "@Example.COM")
    assert auth.request_code(f"  {shouted}\t").status_code == 202
    code = auth.read_code_from_inbox(email)
    response = auth.verify(f" {shouted} ", code)
    assert response.status_code == 200
    assert response.get_json()["user"]["email"] == email


def test_an_idn_address_is_accepted_normalised_and_mailed(auth: AuthActions) -> None:
    local = new_email("zoe").split("@")[0]
    response = auth.request_code(f"{local.upper()}@Bücher.Example")
    assert response.status_code == 202
    code = auth.read_code_from_inbox(f"{local}@xn--bcher-kva.example")
    signed_in = auth.verify(f"{local}@bücher.example", code)
    assert signed_in.status_code == 200
    assert signed_in.get_json()["user"]["email"] == f"{local}@bücher.example"


def test_a_non_ascii_local_part_is_refused_clearly(auth: AuthActions) -> None:
    response = auth.request_code("zoë@example.com")
    assert response.status_code == 422
    problems = response.get_json()["error"]["details"]["fields"]["email"]
    assert "Internationalized characters" in str(problems)


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "a@",
        "@example.com",
        "a b@example.com",
        "victim@example.com\r\nBcc: attacker@example.com",
        "victim@example.com\nX-Injected: 1",
        "a" * 10_000 + "@example.com",
        "",
    ],
)
def test_invalid_addresses_get_422_and_store_nothing(
    redis_url: str, database_url: str, inbox: object, email: str
) -> None:
    # A Redis database of its own: the suite's worker, still finishing earlier tests'
    # emails, and expiring keys would change the shared one under the comparison.
    config = make_config(redis_url, database_url, inbox.port,  # type: ignore[attr-defined]
                         OTP_REDIS_URL=f"{redis_url}/7")
    app = create_app(config)
    redis.Redis.from_url(app.config["OTP_REDIS_URL"]).set("marker", "before")
    before = redis_dump(app)
    response = app.test_client().post("/auth/request-otp", json={"email": email})
    assert response.status_code == 422
    assert error_code(response) == "validation_failed"
    assert "email" in response.get_json()["error"]["details"]["fields"]
    assert redis_dump(app) == before


def test_a_wrong_code_for_another_address_does_not_help(auth: AuthActions) -> None:
    first, second = new_email(), new_email()
    auth.request_code(first)
    code = auth.read_code_from_inbox(first)
    assert error_code(auth.verify(second, code)) == "otp_expired"
    assert error_code(auth.verify(first, other_code(code))) == "otp_invalid"
    assert auth.verify(first, code).status_code == 200


@pytest.mark.live
@pytest.mark.parametrize("spaces", [" ", "\t", "\n", "  \u00a0"], ids=repr)
def test_spaces_around_the_address_are_trimmed_through_gunicorn(
    served: WebNode, auth: AuthActions, spaces: str
) -> None:
    """As the sign-in page trims a pasted address, the API does (every email field)."""
    email = new_email("trimmed")
    sent = served.post_json("/auth/request-otp", {"email": f"{spaces}{email}{spaces}"})
    assert sent.status == 202, sent.body
    code = auth.read_code_from_inbox(email)
    verified = served.post_json("/auth/verify-otp", {"email": f"{spaces}{email}", "otp": code})
    assert verified.status == 200, verified.body
    assert verified.json()["user"]["email"] == email


EMAIL_INPUTS = [
    (name, schema) for name, schema in vars(schemas).items()
    if isinstance(schema, type) and issubclass(schema, Schema)
    and isinstance(schema._declared_fields.get("email"), schemas.NormalisedEmail)
]


@pytest.mark.parametrize("schema", [s for _n, s in EMAIL_INPUTS], ids=[n for n, _s in EMAIL_INPUTS])
def test_every_email_field_trims_the_address(app: Flask, schema: type[Schema]) -> None:
    assert len(EMAIL_INPUTS) >= 4  # request-otp, verify-otp, approval poll, passkey options
    with app.test_request_context():
        loaded = schema(partial=True).load({"email": " \tAda@Example.COM\n"})
    assert loaded["email"] == "ada@example.com"
