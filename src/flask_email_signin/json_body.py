"""Reading a JSON request body through a marshmallow schema."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema

from .errors import MalformedJSON, NotAnObject, UnsupportedMediaType


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
