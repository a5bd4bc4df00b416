"""The reference deployment: a Flask app that adopts flask_email_signin as any host would."""

from __future__ import annotations

import os

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from config import Config, config_for_env


def create_app(config_class: type[Config] | None = None) -> Flask:
    """Build the app from `config_class`, or from the class `APP_ENV` names."""
    app = Flask(__name__)
    app.config.from_object(config_class or config_for_env())
    if app.config.get("OTP_TEMPLATE_FOLDER"):
        # Searched before every blueprint's templates: same-named files override them.
        app.template_folder = app.config["OTP_TEMPLATE_FOLDER"]
    os.makedirs(app.instance_path, exist_ok=True)

    trust_proxies(app)
    app.session_interface = NoFlaskSession()
    register_extensions(app)
    register_blueprints(app)
    return app


class NoFlaskSession(SecureCookieSessionInterface):
    """This deployment keeps no Flask session (sign-in state lives in JWT cookies), so no
    request pays for building the session cookie's signer: every request gets Flask's
    null session, which refuses writes."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        return None


def trust_proxies(app: Flask) -> None:
    """Read the client address from X-Forwarded-For only behind known proxies.

    With `TRUSTED_PROXY_COUNT` = 0 (the default) the header is ignored, since any
    client can send it; with N, ProxyFix takes the address the N-th proxy from the
    app saw, so per-IP rate limits cannot be dodged by forging the header.
    """
    count = int(app.config.get("TRUSTED_PROXY_COUNT") or 0)
    if count > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=0, x_port=0, x_prefix=0
        )


def register_extensions(app: Flask) -> None:
    from .extensions import db, migrate, signin
    from .models import User

    db.init_app(app)
    migrate.init_app(app, db)
    signin.init_app(app, db=db, user_model=User)


def register_blueprints(app: Flask) -> None:
    from .ops import bp as ops_bp

    app.register_blueprint(ops_bp)
