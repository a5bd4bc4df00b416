"""Reading a JSON request body through a marshmallow schema."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema

from .errors import APIError


class UnsupportedMediaType(APIError):
    status = 415
    code = "unsupported_media_type"
    message = "Send the request body as JSON with Content-Type: application/json."


class MalformedJSON(APIError):
    status = 400
    code = "malformed_json"
    message = "The request body is not valid JSON."


class NotAnObject(APIError):
    status = 422
    code = "validation_failed"
    message = "The request body must be a JSON object."


def load_json_body(schema: Schema) -> dict[str, Any]:
    """Parse and validate the body; raise a JSON-enveloped error on any flaw."""
    if not request.is_json:
        raise UnsupportedMediaType()
    payload = request.get_json(silent=True)
    if payload is None:
        # get_json answers None both for bad JSON and for a literal `null`.
        raw = request.get_data(cache=True)
        if raw.strip() != b"null":
            raise MalformedJSON()
    if not isinstance(payload, dict):
        raise NotAnObject()
    return schema.load(payload)
