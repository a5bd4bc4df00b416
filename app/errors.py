"""One JSON error envelope for every failure: {"error": {"code", "message"}}."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import redis
from flask import Flask, Response, jsonify
from flask_limiter import RateLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    """Base for errors a client is meant to see; subclasses set code and status."""

    status = 400
    code = "bad_request"
    message = "The request could not be processed."
    # Sent with every instance; the `headers` argument adds to or overrides them.
    default_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = {**self.default_headers, **(headers or {})}
        self.details = details


class ServiceUnavailable(APIError):
    status = 503
    code = "service_unavailable"
    message = "The service is temporarily unavailable. Please try again shortly."
    # Every 503 tells clients when to try again, like the Redis and broker handlers.
    default_headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
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


def register_error_handlers(app: Flask) -> None:
    """Route every error, ours and the libraries', through the JSON envelope."""

    @app.errorhandler(APIError)
    def handle_api_error(error: APIError) -> Response:
        return error_response(
            error.status,
            error.code,
            error.message,
            headers=error.headers,
            details=error.details,
        )

    @app.errorhandler(ValidationError)
    def handle_validation_error(error: ValidationError) -> Response:
        return error_response(
            422,
            "validation_failed",
            "The request body has invalid fields.",
            details={"fields": error.normalized_messages()},
        )

    @app.errorhandler(RateLimitExceeded)
    def handle_rate_limited(error: RateLimitExceeded) -> Response:
        from .extensions import limiter

        return error_response(
            429,
            "rate_limited",
            "Too many requests from your network. Try again later.",
            headers={"Retry-After": str(limiter.retry_after())},
            details={"limit": str(error.limit.limit)},
        )

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        code = HTTP_CODES.get(status, f"http_{status}")
        response = error_response(status, code, error.description or code)
        if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(redis.RedisError)
    def handle_redis_down(error: redis.RedisError) -> Response:
        log.error("redis unavailable: %s", type(error).__name__)
        return error_response(
            503, ServiceUnavailable.code, ServiceUnavailable.message,
            headers={"Retry-After": "5"},
        )

    @app.errorhandler(BrokerError)
    def handle_broker_down(error: BrokerError) -> Response:
        log.error("task broker unavailable: %s", type(error).__name__)
        return error_response(
            503, ServiceUnavailable.code, ServiceUnavailable.message,
            headers={"Retry-After": "5"},
        )

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "An unexpected error occurred.")
