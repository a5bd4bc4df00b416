"""One JSON error envelope, {"error": {"code", "message", "details"?}}, on the extension's routes.

Registered on the extension's blueprints, so a host's own pages keep their own
error handling (an HTML 404 stays HTML); `OTP_JSON_ERRORS_APP_WIDE` registers the
same handlers on the whole app. Token failures raised by flask-jwt-extended in
our views are mapped here too; elsewhere the app's JWTManager answers them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Blueprint, Flask, Response, jsonify
from flask_babel.speaklater import LazyString
from flask_jwt_extended.exceptions import (
    CSRFError,
    FreshTokenRequired,
    InvalidHeaderError,
    InvalidQueryParamError,
    JWTDecodeError,
    NoAuthorizationError,
    RevokedTokenError,
    UserClaimsVerificationError,
    UserLookupError,
    WrongTokenError,
)
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidTokenError,
    MissingRequiredClaimError,
)
from kombu.exceptions import OperationalError as BrokerError
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from .errors import APIError, ServiceUnavailable
from .i18n import lazy_gettext as _

log = logging.getLogger(__name__)


def error_response(
    status: int,
    code: str,
    message: str | LazyString,
    *,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": str(message)}
    if details:
        body["details"] = details
    response = jsonify(error=body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# Stable machine codes for Werkzeug's HTTP errors.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
}

# In place of Werkzeug's own (English) descriptions.
HTTP_MESSAGES = {
    400: _("The request could not be processed."),
    401: _("Sign in first."),
    403: _("You may not do this."),
    404: _("Nothing is at this address."),
    405: _("This address does not accept that method."),
    413: _("The request body is too large."),
    415: _("Send the request body as JSON with Content-Type: application/json."),
    429: _("Too many requests. Try again later."),
    500: _("An unexpected error occurred."),
}

# flask-jwt-extended's failures: (exception, code, message); all answer 401.
TOKEN_ERRORS: tuple[tuple[type[Exception], str, LazyString], ...] = (
    (NoAuthorizationError, "token_missing", _("Sign in first: no access token was sent.")),
    (CSRFError, "csrf_failed",
     _("Missing or mismatched CSRF token: send the csrf cookie's value in X-CSRF-TOKEN.")),
    (ExpiredSignatureError, "token_expired", _("The token has expired.")),
    (RevokedTokenError, "token_revoked", _("This session has ended. Sign in again.")),
    (WrongTokenError, "wrong_token_type", _("This kind of token is not accepted here.")),
    (InvalidHeaderError, "token_invalid", _("The authorization header is malformed.")),
    (JWTDecodeError, "token_invalid", _("The token is invalid.")),
    (InvalidTokenError, "token_invalid", _("The token is invalid.")),
    (DecodeError, "token_invalid", _("The token is invalid.")),
    (InvalidAudienceError, "token_invalid", _("The token is not meant for this service.")),
    (InvalidIssuerError, "token_invalid", _("The token was not issued by this service.")),
    (MissingRequiredClaimError, "token_invalid", _("The token lacks a required claim.")),
    (InvalidQueryParamError, "token_invalid", _("The token is invalid.")),
    (UserClaimsVerificationError, "token_invalid", _("The token is invalid.")),
    (UserLookupError, "token_invalid", _("The token's user was not found.")),
    (FreshTokenRequired, "fresh_token_required", _("Sign in again for this action.")),
)


def handle_api_error(error: APIError) -> Response:
    return error_response(
        error.status, error.code, error.message, headers=error.headers, details=error.details
    )


def handle_validation_error(error: ValidationError) -> Response:
    return error_response(
        422,
        "validation_failed",
        _("The request body has invalid fields."),
        details={"fields": error.normalized_messages()},
    )


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code = HTTP_CODES.get(status, f"http_{status}")
    description = error.description
    if description == type(error).description or not description:
        description = HTTP_MESSAGES.get(status, description or code)
    response = error_response(status, code, description)
    valid_methods = getattr(error, "valid_methods", None)
    if status == 405 and valid_methods:
        response.headers["Allow"] = ", ".join(valid_methods)
    return response


def handle_store_down(error: Exception) -> Response:
    service = "redis" if isinstance(error, redis.RedisError) else "task broker"
    log.error("%s unavailable: %s", service, type(error).__name__)
    return handle_api_error(ServiceUnavailable())


def handle_unexpected(_error: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal_error", _("An unexpected error occurred."))


def _token_error(code: str, message: LazyString) -> Callable[[Exception], Response]:
    def handler(_error: Exception) -> Response:
        return error_response(401, code, message)

    return handler


def register_error_handlers(scope: Blueprint | Flask) -> None:
    """Route every error raised under `scope` (a blueprint, or the app) through the envelope."""
    scope.register_error_handler(APIError, handle_api_error)
    scope.register_error_handler(ValidationError, handle_validation_error)
    scope.register_error_handler(HTTPException, handle_http_exception)
    # By status code too: Flask looks up code handlers (a host's `errorhandler(404)`)
    # before class handlers, whatever their scope.
    for status in HTTP_CODES:
        scope.register_error_handler(status, handle_http_exception)
    scope.register_error_handler(redis.RedisError, handle_store_down)
    scope.register_error_handler(BrokerError, handle_store_down)
    register_token_error_handlers(scope)
    scope.register_error_handler(Exception, handle_unexpected)


def register_token_error_handlers(scope: Blueprint | Flask) -> None:
    """The envelope for token failures (on the app too when the extension made its JWTManager:
    registered after the manager's own handlers, these replace its {"msg": ...} answers)."""
    for exc, code, message in TOKEN_ERRORS:
        scope.register_error_handler(exc, _token_error(code, message))
