"""Per-IP rate limits (Flask-Limiter on the real Redis), proxies, and their cost.

The suite runs with generous limits; each test lowers one, and sends from its own
client address, so counters left by other tests never matter.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from limits import parse
from live_stack import WebNode, node_environment, private_redis

from app import create_app
from app.devtools.inbox import Inbox
from flask_email_signin.rate_limits import describe
from support import (
    AuthActions,
    error_code,
    make_config,
    new_email,
    other_code,
    redis_monitor,
)


def new_ip() -> str:
    """A client address no other test uses (IPv6 documentation prefix)."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def client_from(app: Flask, ip: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def assert_rate_limited(response: Any, window_seconds: int) -> None:
    """The one JSON error envelope, with a Retry-After inside the limit's window."""
    assert response.status_code == 429
    assert error_code(response) == "rate_limited"
    assert response.get_json()["error"]["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= window_seconds


def test_request_otp_is_limited_per_ip(
    app: Flask, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "OTP_RATE_LIMIT_REQUEST", "3 per minute")
    client, other = client_from(app, new_ip()), client_from(app, new_ip())
    for _ in range(3):
        assert client.post("/auth/request-otp", json={"email": new_email()}).status_code == 202
    assert_rate_limited(client.post("/auth/request-otp", json={"email": new_email()}), 60)
    # Another address has its own budget.
    assert other.post("/auth/request-otp", json={"email": new_email()}).status_code == 202


def test_verify_otp_is_limited_per_ip_even_for_the_right_code(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(auth.app.config, "OTP_RATE_LIMIT_VERIFY", "2 per minute")
    auth.client.environ_base["REMOTE_ADDR"] = new_ip()
    assert auth.request_code(email).status_code == 202
    code = auth.read_code_from_inbox(email)
    assert error_code(auth.verify(email, other_code(code))) == "otp_invalid"
    assert error_code(auth.verify(email, other_code(code))) == "otp_invalid"
    assert_rate_limited(auth.verify(email, code), 60)
    # The refused request did not touch the code: another address can still use it.
    assert client_from(auth.app, new_ip()).post(
        "/auth/verify-otp", json={"email": email, "otp": code}
    ).status_code == 200


def test_refresh_is_limited_per_ip_before_the_token_is_checked(
    auth: AuthActions, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth.client.environ_base["REMOTE_ADDR"] = new_ip()
    auth.sign_in(email)
    monkeypatch.setitem(auth.app.config, "OTP_RATE_LIMIT_REFRESH", "2 per hour")
    for _ in range(2):
        response = auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh"))
        assert response.status_code == 200, response.get_json()
    assert_rate_limited(
        auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh")), 3600
    )
    # Garbage tokens from the same address are refused by the limit too, not decoded.
    assert_rate_limited(
        auth.client.post("/auth/refresh", headers={"Authorization": "Bearer x.y.z"}), 3600
    )


def test_limits_are_read_from_the_config_on_every_request(
    app: Flask, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_from(app, new_ip())
    monkeypatch.setitem(app.config, "OTP_RATE_LIMIT_REQUEST", "1 per minute")
    assert client.post("/auth/request-otp", json={"email": new_email()}).status_code == 202
    assert client.post("/auth/request-otp", json={"email": new_email()}).status_code == 429
    monkeypatch.setitem(app.config, "OTP_RATE_LIMIT_REQUEST", "5 per minute")
    assert client.post("/auth/request-otp", json={"email": new_email()}).status_code == 202


def test_x_forwarded_for_is_ignored_without_trusted_proxies(
    app: Flask, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert app.config["TRUSTED_PROXY_COUNT"] == 0
    monkeypatch.setitem(app.config, "OTP_RATE_LIMIT_REQUEST", "2 per minute")
    client = client_from(app, new_ip())
    for forged in ("198.51.100.1", "198.51.100.2"):
        response = client.post(
            "/auth/request-otp", json={"email": new_email()}, headers={"X-Forwarded-For": forged}
        )
        assert response.status_code == 202
    response = client.post(
        "/auth/request-otp",
        json={"email": new_email()},
        headers={"X-Forwarded-For": "198.51.100.3"},
    )
    assert_rate_limited(response, 60)


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    suite_config: type, celery_worker: object
) -> None:
    config = make_config(
        suite_config.OTP_REDIS_URL.rsplit("/", 1)[0],
        suite_config.SQLALCHEMY_DATABASE_URI,
        suite_config.MAIL_PORT,
        TRUSTED_PROXY_COUNT=1,
        OTP_RATE_LIMIT_REQUEST="2 per minute",
    )
    proxy = client_from(create_app(config), "127.0.0.1")  # every request comes via the proxy
    first, second = new_ip(), new_ip()

    def request_from(client_ip: str, forged: str | None = None) -> Any:
        # The proxy appends the address it saw; a client may have forged entries before it.
        chain = f"{forged}, {client_ip}" if forged else client_ip
        return proxy.post(
            "/auth/request-otp", json={"email": new_email()}, headers={"X-Forwarded-For": chain}
        )

    assert request_from(first).status_code == 202
    assert request_from(first, forged=new_ip()).status_code == 202  # forging does not help
    assert_rate_limited(request_from(first, forged=new_ip()), 60)
    assert request_from(second).status_code == 202


def test_an_app_with_limits_disabled_leaves_other_apps_limited(
    app: Flask, suite_config: type, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    unlimited_config = make_config(
        suite_config.OTP_REDIS_URL.rsplit("/", 1)[0],
        suite_config.SQLALCHEMY_DATABASE_URI,
        suite_config.MAIL_PORT,
        OTP_RATE_LIMIT_ENABLED=False,
        OTP_RATE_LIMIT_REQUEST="1 per minute",
    )
    unlimited = client_from(create_app(unlimited_config), new_ip())
    for _ in range(3):
        assert unlimited.post("/auth/request-otp", json={"email": new_email()}).status_code == 202

    # Building that app did not switch off the limits of the suite's app.
    monkeypatch.setitem(app.config, "OTP_RATE_LIMIT_REQUEST", "1 per minute")
    limited = client_from(app, new_ip())
    assert limited.post("/auth/request-otp", json={"email": new_email()}).status_code == 202
    assert_rate_limited(limited.post("/auth/request-otp", json={"email": new_email()}), 60)


def test_a_protected_request_costs_one_redis_command_and_no_rate_limit(
    auth: AuthActions, email: str
) -> None:
    auth.sign_in(email)
    auth.inbox.wait_for(email)
    url = auth.app.config["OTP_REDIS_URL"]
    with redis_monitor(url) as commands:
        assert auth.client.get("/auth/me").status_code == 200
    state_db = int(url.rsplit("/", 1)[1])
    # Commands a Lua script runs inside the server show as client "lua": not round trips.
    round_trips = [c for c in commands if c["db"] == state_db and c["client_address"] != "lua"]
    assert len(round_trips) == 1, round_trips
    assert not any("LIMITS" in c["command"] for c in commands), commands


@pytest.mark.parametrize(
    ("setting", "language", "said"),
    [
        ("20 per 10 minutes", "en", "20 requests per 10 minutes"),
        ("1/day", "en", "1 request per day"),
        ("100/day", "en", "100 requests per day"),
        ("3 per minute", "en", "3 requests per minute"),
        ("5 per 2 hours", "en", "5 requests per 2 hours"),
        ("20 per 10 minutes", "de", "20 Anfragen pro 10 Minuten"),
        ("1 per hour", "de", "1 Anfrage pro Stunde"),
        ("22 per 5 minutes", "pl", "22 żądania na 5 minut"),
        ("25 per 2 minutes", "pl", "25 żądań na 2 minuty"),
        ("20 per 10 minutes", "ja", "10分あたり20回のリクエスト"),
        ("20 per minute", "zh-CN", "每分钟20次请求"),
    ],
)
def test_a_refused_limit_is_named_as_people_say_it(
    app: Flask, setting: str, language: str, said: str
) -> None:
    with app.test_request_context(headers={"Accept-Language": language}):
        assert describe(parse(setting)) == said


@pytest.mark.live
def test_the_refusal_names_the_limit_in_the_clients_language_through_gunicorn(
    app: Flask, database_url: str, inbox: Inbox, tmp_path: Path
) -> None:
    with private_redis(tmp_path / "redis") as own:  # counters no other test adds to
        env = node_environment(
            redis_url=f"{own}/0", broker_url=f"{own}/1", database_url=database_url,
            mail_port=inbox.port,  # type: ignore[attr-defined]
            OTP_RATE_LIMIT_VERIFY="2 per 10 minutes",
        )
        node = WebNode(env, tmp_path, "limited")
        try:
            node.wait_ready()
            body = {"email": new_email("limited"), "otp": "123456"}
            for source, language, said in [("127.0.40.1", "en", "2 requests per 10 minutes"),
                                           ("127.0.40.2", "de", "2 Anfragen pro 10 Minuten")]:
                answers = [
                    node.post_json("/auth/verify-otp", body, {"Accept-Language": language},
                                   source=source)
                    for _ in range(3)
                ]
                assert [a.status for a in answers] == [401, 401, 429]
                assert answers[2].error_code() == "rate_limited"
                assert answers[2].json()["error"]["details"]["limit"] == said
        finally:
            node.stop()
