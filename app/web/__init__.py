"""The `web` blueprint: the sign-in page and the one-click link pages people see.

Its templates (`web/*.html`) come after the app's own template folder, so a
host overrides one by placing a file with the same name there (see
OTP_TEMPLATE_FOLDER). Plain HTML, CSS and a little JavaScript; no build step.
"""

from flask import Blueprint

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/auth/assets",
)

# Imported last: routes attach themselves to bp.
from . import routes  # noqa: E402,F401
