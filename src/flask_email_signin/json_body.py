"""Reading a JSON request body through a marshmallow schema."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import MalformedJSON, NotAnObject, UnsupportedMediaType


def refuse_a_streamed_body_past_the_limit() -> None:
    """A chunked body (no Content-Length) longer than MAX_CONTENT_LENGTH is too large.

    Werkzeug checks Content-Length against the limit, but it reads a streamed body
    only up to the limit and stops there without an error: the rest would be cut off
    silently, and a body whose first part happens to be valid JSON accepted. When the
    read stops at the limit, one more byte from the server's stream tells a body of
    exactly the limit (accepted, as with Content-Length) from a longer one (413).
    """
    limit = request.max_content_length
    if request.content_length is None and limit is not None:
        if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()


def load_json_body(schema: Schema) -> dict[str, Any]:
    """Parse and validate the body; raise a JSON-enveloped error on any flaw."""
    if not request.is_json:
        raise UnsupportedMediaType()
    refuse_a_streamed_body_past_the_limit()
    payload = request.get_json(silent=True)
    if payload is None:
        # get_json answers None both for bad JSON and for a literal `null`.
        raw = request.get_data(cache=True)
        if raw.strip() != b"null":
            raise MalformedJSON()
    if not isinstance(payload, dict):
        raise NotAnObject()
    return schema.load(payload)
