"""The `ops` blueprint: liveness, readiness and metrics for the platform running the app."""

from flask import Blueprint

bp = Blueprint("ops", __name__)

from . import routes  # noqa: E402,F401  (routes attach themselves to bp)
