"""The OpenAPI 3 description of the auth API, generated from its marshmallow schemas.

Served at `GET <prefix>/openapi.json`. Request and response bodies come from
`schemas.py` through apispec's marshmallow plugin, so the document cannot drift
from the validation the endpoints really apply; the suite runs schemathesis
against the live app with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from .schemas import (
    MAX_EMAIL_LENGTH,
    ApprovalPollSchema,
    ApprovalWaitingSchema,
    CeremonySchema,
    CodeSentSchema,
    LogoutAllSchema,
    NormalisedEmail,
    PasskeyAuthenticateSchema,
    PasskeyAuthOptionsSchema,
    PasskeyListSchema,
    PasskeyRegisterSchema,
    PasskeyRenameSchema,
    PasskeySchema,
    ProfileSchema,
    ProfileUpdateSchema,
    RequestCodeSchema,
    SessionListSchema,
    SessionSchema,
    SignedInSchema,
    StepUpSchema,
    UserSchema,
    VerifyCodeSchema,
)

OPENAPI_VERSION = "3.0.3"


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"description": "Stable machine code."})
    message = fields.String(required=True)
    details = fields.Dict(metadata={"description": "Extra facts: `fields`, `attempts_left`..."})


class ErrorSchema(Schema):
    """The one error envelope of every failure (error_handlers)."""

    error = fields.Nested(ErrorBodySchema, required=True)


class AccessTokenSchema(Schema):
    access_token = fields.String()
    token_type = fields.String()


class MessageSchema(Schema):
    message = fields.String()


class SessionEndedSchema(Schema):
    message = fields.String()
    current = fields.Boolean(metadata={"description": "The session of the token used."})


class SessionsEndedSchema(Schema):
    message = fields.String()
    ended = fields.Integer(metadata={"description": "How many sessions were ended."})


# Response bodies: every property they declare is always present.
RESPONSE_SCHEMAS: dict[str, type[Schema]] = {  # nested ones before their parents
    "User": UserSchema,
    "CodeSent": CodeSentSchema,
    "ApprovalWaiting": ApprovalWaitingSchema,
    "SignedIn": SignedInSchema,
    "Profile": ProfileSchema,
    "AccessToken": AccessTokenSchema,
    "Message": MessageSchema,
    "Session": SessionSchema,
    "SessionList": SessionListSchema,
    "SessionEnded": SessionEndedSchema,
    "SessionsEnded": SessionsEndedSchema,
    "Passkey": PasskeySchema,
    "PasskeyList": PasskeyListSchema,
    "Ceremony": CeremonySchema,
}
REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "RequestCode": RequestCodeSchema,
    "VerifyCode": VerifyCodeSchema,
    "LogoutAll": LogoutAllSchema,
    "ApprovalPoll": ApprovalPollSchema,
    "ProfileUpdate": ProfileUpdateSchema,
    "PasskeyRegister": PasskeyRegisterSchema,
    "PasskeyAuthOptions": PasskeyAuthOptionsSchema,
    "PasskeyAuthenticate": PasskeyAuthenticateSchema,
    "PasskeyRename": PasskeyRenameSchema,
    "StepUp": StepUpSchema,
}

ERRORS = {
    400: "The body is not valid JSON (`malformed_json`), or a passkey ceremony that expired "
    "or was already used (`passkey_ceremony_expired`).",
    401: "Wrong, older (`otp_superseded`), expired or used code, or a missing, invalid, "
    "expired or revoked token.",
    409: "This passkey is already registered (`passkey_already_registered`).",
    403: "Account deactivated, sign-up closed, or a sign-in denied on another device "
    "(`signin_denied`) or not asked for by this browser (`not_the_asking_browser`).",
    410: "The link of this sign-in was already used (`link_used`).",
    404: "Not found.",
    413: "The body is larger than MAX_CONTENT_LENGTH (`payload_too_large`).",
    415: "The body is not sent as application/json (`unsupported_media_type`).",
    422: "A field is missing or invalid (`validation_failed`, details in `details.fields`).",
    429: "A rate limit, the resend cooldown, the hourly cap or a lockout; see Retry-After.",
    503: "Redis or the task broker is unreachable; try again (see Retry-After).",
}
JSON_BODY_ERRORS = (400, 413, 415, 422)
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _email_and_code_formats(self: Any, field: fields.Field, **_kwargs: Any) -> dict[str, Any]:
    """What the custom email field accepts, in OpenAPI terms."""
    if isinstance(field, NormalisedEmail):
        return {
            "format": "email",
            "maxLength": MAX_EMAIL_LENGTH,
            "description": (
                "An address mail can be delivered to, trimmed of surrounding spaces: an ASCII "
                "local part, and a domain with a dot (internationalised names allowed) that is "
                "not special-use or reserved (.test, .invalid, .localhost, .local, .onion and "
                ".arpa are refused with 422). Compared case-insensitively."
            ),
        }
    return {}


def _responses(
    success: int, body: str | None, description: str, errors: tuple[int, ...]
) -> dict[str, Any]:
    responses: dict[str, Any] = {str(success): {"description": description}}
    if body:
        responses[str(success)]["content"] = {"application/json": {"schema": body}}
    for status in errors:
        response: dict[str, Any] = {"$ref": f"#/components/responses/Error{status}"}
        responses[str(status)] = response
    return responses


def _with_links(responses: dict[str, Any], **links: dict[str, Any]) -> dict[str, Any]:
    """The success response's OpenAPI links: operations its values feed."""
    success = next(status for status in responses if status.startswith("2"))
    responses[success]["links"] = links
    return responses


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _passkey_paths(
    spec: APISpec, prefix: str, signed_in: list[dict[str, list[str]]],
    token_errors: tuple[int, ...],
) -> None:
    writes: list[dict[str, list[str]]] = [{"bearer": []}, {"accessCookie": [], "csrfHeader": []}]
    webauthn_object = {"description": "As the WebAuthn JSON methods give and take it.",
                       "content": {"application/json": {"schema": {"type": "object"}}}}
    spec.path(path=prefix + "/passkeys/register/options", operations={"post": {
        "summary": "Options for navigator.credentials.create(): a passkey for this user",
        "security": writes,
        "responses": {"200": webauthn_object,
                      **_responses(200, None, "", (*token_errors, 429))},
    }})
    spec.path(path=prefix + "/passkeys/register", operations={"post": {
        "summary": "Store the new passkey (its attestation verified)",
        "requestBody": _json_body("PasskeyRegister"), "security": writes,
        "responses": _responses(201, "Passkey", "Stored.",
                                (*JSON_BODY_ERRORS, *token_errors, 400, 409, 429)),
    }})
    spec.path(path=prefix + "/passkeys/authenticate/options", operations={"post": {
        "summary": "Options for navigator.credentials.get(), and the ceremony id",
        "requestBody": {"required": False,
                        "content": {"application/json": {"schema": "PasskeyAuthOptions"}}},
        "responses": _responses(200, "Ceremony", "The options.", (*JSON_BODY_ERRORS, 429, 503)),
    }})
    spec.path(path=prefix + "/passkeys/authenticate", operations={"post": {
        "summary": "Sign in with a passkey (the same session as a code)",
        "requestBody": _json_body("PasskeyAuthenticate"),
        "responses": _responses(200, "SignedIn", "Signed in.",
                                (*JSON_BODY_ERRORS, 400, 401, 403, 429, 503)),
    }})
    spec.path(path=prefix + "/passkeys", operations={"get": {
        "summary": "The user's passkeys", "security": signed_in,
        "responses": _responses(200, "PasskeyList", "The passkeys.", token_errors),
    }})
    passkey_id = [{"name": "passkey_id", "in": "path", "required": True,
                   "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}]
    spec.path(path=prefix + "/passkeys/{passkey_id}", operations={
        "patch": {
            "summary": "Rename a passkey", "parameters": passkey_id, "security": writes,
            "requestBody": _json_body("PasskeyRename"),
            "responses": _responses(200, "Passkey", "Renamed.",
                                    (*JSON_BODY_ERRORS, *token_errors, 404)),
        },
        "delete": {
            "summary": "Delete a passkey (needs a recent authentication)",
            "parameters": passkey_id, "security": writes,
            "responses": _responses(200, "Message", "Deleted.", (*token_errors, 404)),
        },
    })
    spec.path(path=prefix + "/step-up/options", operations={"post": {
        "summary": "Options to confirm it is you with a passkey", "security": writes,
        "responses": _responses(200, "Ceremony", "The options.", (*token_errors, 429)),
    }})
    spec.path(path=prefix + "/step-up/code", operations={"post": {
        "summary": "Email a code to confirm it is you", "security": writes,
        "responses": _responses(202, "CodeSent", "Queued.", (*token_errors, 429)),
    }})
    spec.path(path=prefix + "/step-up", operations={"post": {
        "summary": "Confirm it is you: a fresh access token", "security": writes,
        "requestBody": _json_body("StepUp"),
        "responses": _responses(200, "AccessToken", "Confirmed.",
                                (*JSON_BODY_ERRORS, *token_errors, 400, 429)),
    }})


def build_openapi_document(config: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The whole document for an app with this config (cookie names, code length), whose
    API is mounted at `prefix` (the script root included)."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=f"{config.get('OTP_APP_NAME') or 'Passwordless'} sign-in API",
        version="1.0.0",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": "Passwordless email sign-in: one-time codes by email, JWT sessions."},
    )
    assert plugin.converter is not None
    plugin.converter.add_attribute_function(_email_and_code_formats)
    spec.components.schema("Error", schema=ErrorSchema)
    for name, schema in {**REQUEST_SCHEMAS, **RESPONSE_SCHEMAS}.items():
        spec.components.schema(name, schema=schema)
    for status, description in ERRORS.items():
        spec.components.response(
            f"Error{status}",
            {
                "description": description,
                "content": {"application/json": {"schema": "Error"}},
                **({"headers": RETRY_AFTER} if status in (429, 503) else {}),
            },
        )
    access_cookie = config.get("JWT_ACCESS_COOKIE_NAME", "access_token")
    refresh_cookie = config.get("JWT_REFRESH_COOKIE_NAME", "refresh_token")
    for name, scheme in {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "accessCookie": {"type": "apiKey", "in": "cookie", "name": access_cookie},
        "refreshCookie": {"type": "apiKey", "in": "cookie", "name": refresh_cookie},
        "csrfHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-CSRF-TOKEN",
            "description": "The csrf_access_token / csrf_refresh_token cookie's value "
            "(unsafe methods with cookie authentication).",
        },
    }.items():
        spec.components.security_scheme(name, scheme)

    token_errors = (401, 422, 503)
    signed_in: list[dict[str, list[str]]] = [{"bearer": []}, {"accessCookie": []}]
    spec.path(
        path=prefix + "/request-otp",
        operations={
            "post": {
                "summary": "Email a one-time sign-in code",
                "description": "Same answer whether or not the address has an account.",
                "requestBody": _json_body("RequestCode"),
                "responses": _responses(202, "CodeSent", "Queued.", (*JSON_BODY_ERRORS, 429, 503)),
            }
        },
    )
    spec.path(
        path=prefix + "/verify-otp",
        operations={
            "post": {
                "summary": "Exchange a code for a session (cookies and a bearer token)",
                "requestBody": _json_body("VerifyCode"),
                "responses": _responses(
                    200, "SignedIn", "Signed in.", (*JSON_BODY_ERRORS, 401, 403, 429, 503)
                ),
            }
        },
    )
    spec.path(
        path=prefix + "/link-approval",
        operations={
            "post": {
                "summary": "The asking browser's poll: signed in once its link is approved "
                "on another device",
                "description": "Needs the binding cookie set by request-otp with "
                "`bind_browser`. 202 while waiting; 200 signs in like verify-otp.",
                "requestBody": _json_body("ApprovalPoll"),
                "responses": {
                    **_responses(
                        200, "SignedIn", "Approved: signed in.",
                        (*JSON_BODY_ERRORS, 401, 403, 410, 429, 503),
                    ),
                    "202": {
                        "description": "Not approved yet: ask again in a second or two.",
                        "content": {"application/json": {"schema": "ApprovalWaiting"}},
                    },
                },
            }
        },
    )
    spec.path(
        path=prefix + "/refresh",
        operations={
            "post": {
                "summary": "A new access token from the refresh cookie",
                "security": [{"refreshCookie": [], "csrfHeader": []}],
                "responses": _responses(200, "AccessToken", "Refreshed.", (*token_errors, 429)),
            }
        },
    )
    spec.path(
        path=prefix + "/logout",
        operations={
            "post": {
                "summary": "End this sign-in everywhere",
                "security": [{"bearer": []}, {"accessCookie": [], "csrfHeader": []}],
                "responses": _responses(200, "Message", "Signed out.", token_errors),
            }
        },
    )
    spec.path(
        path=prefix + "/me",
        operations={
            "get": {
                "summary": "The signed-in user's profile",
                "security": signed_in,
                "responses": _responses(200, "Profile", "The profile.", (*token_errors, 404)),
            },
            "patch": {
                "summary": "Change the user's preferences (`locale`)",
                "requestBody": _json_body("ProfileUpdate"),
                "security": [{"bearer": []}, {"accessCookie": [], "csrfHeader": []}],
                "responses": _responses(
                    200, "Profile", "The updated profile.",
                    (*JSON_BODY_ERRORS, *token_errors, 404),
                ),
            },
        },
    )
    spec.path(
        path=prefix + "/sessions",
        operations={
            "get": {
                "summary": "The user's live sessions, most recently used first",
                "security": signed_in,
                "responses": _with_links(
                    _responses(200, "SessionList", "The sessions.", token_errors),
                    # Where a listed session's id goes: clients (and stateful testers)
                    # follow it to end that session.
                    EndSession={
                        "operationId": "endSession",
                        "parameters": {"sid": "$response.body#/sessions/0/id"},
                    },
                ),
            }
        },
    )
    spec.path(
        path=prefix + "/sessions/{sid}",
        operations={
            "delete": {
                "operationId": "endSession",
                "summary": "End one of the user's sessions",
                "parameters": [
                    {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "security": [{"bearer": []}, {"accessCookie": [], "csrfHeader": []}],
                "responses": _responses(
                    200, "SessionEnded", "Ended.", (*token_errors, 404)
                ),
            }
        },
    )
    spec.path(
        path=prefix + "/logout-all",
        operations={
            "post": {
                "summary": "End every session of the user (all but this one with keep_current)",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": "LogoutAll"}},
                },
                "security": [{"bearer": []}, {"accessCookie": [], "csrfHeader": []}],
                "responses": _responses(
                    200, "SessionsEnded", "Signed out.", (*JSON_BODY_ERRORS, *token_errors)
                ),
            }
        },
    )
    if config.get("OTP_PASSKEYS", True):
        _passkey_paths(spec, prefix, signed_in, token_errors)
    spec.path(
        path=prefix + "/openapi.json",
        operations={
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    )
    document = spec.to_dict()
    schemas = document["components"]["schemas"]
    otp = schemas["VerifyCode"]["properties"]["otp"]
    length = int(config.get("OTP_LENGTH", 6))
    otp.update(pattern=f"^[0-9]{{{length}}}$", minLength=length, maxLength=length)
    for name in RESPONSE_SCHEMAS:
        schemas[name]["required"] = sorted(schemas[name]["properties"])
    return document
