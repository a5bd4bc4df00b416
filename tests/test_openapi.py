"""The OpenAPI document, and schemathesis against the live app: no 5xx, no off-schema answer."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import run_state_machine_as_test
from live_stack import WebNode
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from app import create_app
from app.devtools.inbox import Inbox
from support import AuthActions, make_config, new_email

# Tasks queued by generated requests go to a broker database no worker reads;
# the suite owns this server and empties that database afterwards.
FUZZ_BROKER_DB = 2
# Signed-in scenarios of up to 6 calls each: about 20 s on two cores, bounded at 60.
STATEFUL_SCENARIOS = 150
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_the_document_is_openapi_3_built_from_the_schemas(client: FlaskClient) -> None:
    document = client.get("/auth/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert {"/auth/request-otp", "/auth/verify-otp", "/auth/refresh", "/auth/logout",
            "/auth/me"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    verify = schemas["VerifyCode"]
    assert verify["required"] == ["email", "otp"]
    assert verify["additionalProperties"] is False  # unknown fields are refused
    assert verify["properties"]["otp"]["pattern"] == "^[0-9]{6}$"
    assert verify["properties"]["email"]["format"] == "email"
    assert set(schemas["Error"]["properties"]) == {"error"}
    assert "Retry-After" in document["components"]["responses"]["Error429"]["headers"]


@pytest.fixture
def fuzzed_app(app: Flask, redis_url: str, database_url: str, inbox: Inbox) -> Iterator[Flask]:
    """A live app of its own (the suite's `app` has migrated the database)."""
    broker_url = f"{redis_url}/{FUZZ_BROKER_DB}"
    yield create_app(
        make_config(redis_url, database_url, inbox.port, OTP_CELERY_BROKER_URL=broker_url)
    )
    redis.Redis.from_url(broker_url).flushdb()


# Invalid requests (negative mode) need something to make invalid: a body, or the
# credentials of the protected operations; the document itself takes no input.
WITH_INPUT = [
    ("POST", "/auth/request-otp"),
    ("POST", "/auth/verify-otp"),
    ("POST", "/auth/refresh"),
    ("POST", "/auth/logout"),
    ("GET", "/auth/me"),
    ("GET", "/auth/sessions"),
    ("DELETE", "/auth/sessions/{sid}"),
    ("POST", "/auth/logout-all"),
]
CASES = [
    *((method, path, mode) for method, path in WITH_INPUT for mode in GenerationMode),
    ("GET", "/auth/openapi.json", GenerationMode.POSITIVE),
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_generated_requests_get_no_5xx_and_documented_answers(
    fuzzed_app: Flask, method: str, path: str, mode: GenerationMode
) -> None:
    """Valid and invalid requests built from the document, sent to the app through WSGI."""
    schema = schemathesis.openapi.from_wsgi("/auth/openapi.json", fuzzed_app)
    operation = schema[path][method]

    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    call()


def test_signed_in_answers_match_the_document(auth: AuthActions, email: str) -> None:
    """What generated requests cannot reach without a session: the success bodies."""
    schema = schemathesis.openapi.from_dict(auth.client.get("/auth/openapi.json").get_json())

    def conforms(method: str, path: str, response: object, status: int = 200) -> None:
        assert response.status_code == status, response.get_data()  # type: ignore[attr-defined]
        schema[path][method].validate_response(response)

    assert auth.request_code(email).status_code == 202
    conforms("POST", "/auth/verify-otp", auth.verify(email, auth.read_code_from_inbox(email)))
    conforms("GET", "/auth/me", auth.client.get("/auth/me"))
    conforms("GET", "/auth/sessions", auth.client.get("/auth/sessions"))
    refreshed = auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh"))
    conforms("POST", "/auth/refresh", refreshed)
    # An unknown session id, then every session but this one, then this one by its id.
    sessions = auth.client.get("/auth/sessions").get_json()["sessions"]
    current = next(session["id"] for session in sessions if session["current"])
    missing = auth.client.delete("/auth/sessions/not-a-session", headers=auth.csrf_header())
    conforms("DELETE", "/auth/sessions/{sid}", missing, status=404)
    kept = auth.client.post(
        "/auth/logout-all", json={"keep_current": True}, headers=auth.csrf_header()
    )
    conforms("POST", "/auth/logout-all", kept)
    ended = auth.client.delete(f"/auth/sessions/{current}", headers=auth.csrf_header())
    conforms("DELETE", "/auth/sessions/{sid}", ended)
    conforms("POST", "/auth/logout", auth.client.post("/auth/logout"), status=401)


@pytest.mark.live
@pytest.mark.parametrize("address", ["x@w1cn5.test", "x@printer.local", "x@host.invalid"])
def test_the_document_says_which_addresses_are_refused(served: WebNode, address: str) -> None:
    """Every email field describes what the API refuses, and the API refuses it (gunicorn)."""
    schemas = served.exchange("GET", "/auth/openapi.json").json()["components"]["schemas"]
    emails = [s["properties"]["email"] for s in schemas.values()
              if "email" in s.get("properties", {}) and s["properties"]["email"].get("format")]
    assert len(emails) >= 2  # request-otp, verify-otp and the others that take an address
    for email in emails:
        assert email["format"] == "email" and email["maxLength"] == 254
        described = email["description"]
        assert "trimmed" in described and address.rsplit(".", 1)[1] in described
    refused = served.exchange(
        "POST", "/auth/request-otp", json.dumps({"email": address}).encode(),
        {"Content-Type": "application/json"},
    )
    assert (refused.status, refused.error_code()) == (422, "validation_failed")


STATEFUL_CHECKS = [*CHECKS, use_after_free, ensure_resource_availability]


def test_stateful_runs_with_a_real_session_get_no_5xx_and_documented_answers(
    app: Flask, auth: AuthActions, record_property: Callable[[str, object], None]
) -> None:
    """Sequences of calls following the document's links (a listed session's id ends that
    session), each scenario signed in for real: the authenticated operations are reached."""
    schema = schemathesis.openapi.from_wsgi("/auth/openapi.json", app)
    links = schema["/auth/sessions"]["GET"].definition.raw["responses"]["200"]["links"]
    assert links["EndSession"]["operationId"] == "endSession"
    statuses: Counter[str] = Counter()

    class SignedInStateMachine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            email = new_email("stateful")
            assert auth.request_code(email).status_code == 202
            answer = auth.verify(email, auth.read_code_from_inbox(email))
            assert answer.status_code == 200, answer.get_json()
            self.token = answer.get_json()["access_token"]

        def before_call(self, case: schemathesis.Case) -> None:
            # Generated credentials (absent or random) are replaced by the scenario's own.
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {self.token}"}

        def validate_response(  # type: ignore[override]
            self, response: Any, case: schemathesis.Case, **kwargs: Any
        ) -> None:
            statuses[f"{case.method} {case.path} {response.status_code}"] += 1
            case.validate_response(response, checks=STATEFUL_CHECKS, recorder=self.recorder)

    started = time.monotonic()
    run_state_machine_as_test(
        SignedInStateMachine,
        settings=settings(
            max_examples=STATEFUL_SCENARIOS, stateful_step_count=6, deadline=None,
            database=None, suppress_health_check=list(HealthCheck),
        ),
    )
    elapsed = time.monotonic() - started
    record_property("measured", f"stateful run: {sum(statuses.values())} calls in "
                    f"{elapsed:.1f} s; {dict(sorted(statuses.items()))}")
    assert elapsed < 60
    # The link was followed with real ids: sessions listed, then ended by their id.
    assert statuses["GET /auth/sessions 200"] and statuses["DELETE /auth/sessions/{sid} 200"]
