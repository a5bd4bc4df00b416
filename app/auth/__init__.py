"""The `auth` blueprint: passwordless sign-in by emailed one-time code."""

from flask import Blueprint

# Its templates (the emails) come after the app's own folder: same names there override them.
bp = Blueprint("auth", __name__, template_folder="templates")

# Imported last: routes attach themselves to bp, tasks register with Celery.
from . import routes, tasks  # noqa: E402,F401
