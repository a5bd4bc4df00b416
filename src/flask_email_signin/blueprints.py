"""The extension's blueprints, each with the JSON envelope, request ids and metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask_babel import refresh

from .error_handlers import register_error_handlers
from .logs import init_request_ids
from .metrics import init_request_metrics


def extension_blueprint(name: str, import_name: str, **options: Any) -> Blueprint:
    bp = Blueprint(name, import_name, **options)
    register_error_handlers(bp)
    init_request_ids(bp)
    init_request_metrics(bp)
    # The locale is chosen per request (and cached on `g` by Flask-Babel): an app context
    # that outlives a request, as in tests, must not carry the last request's choice.
    bp.before_request(refresh)
    return bp
