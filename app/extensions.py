"""The reference deployment's extension objects, created once and bound in `create_app`."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from flask_email_signin import EmailSignIn

# Sessions live for one request or task: objects need not be reloaded after a commit
# (reloading would cost a SELECT per sign-in just to read back what was written).
db = SQLAlchemy(session_options={"expire_on_commit": False})
migrate = Migrate()
signin = EmailSignIn()
