"""Passwordless email sign-in for Flask."""

from __future__ import annotations

import os

from flask import Flask

from config import Config, config_for_env


def create_app(config_class: type[Config] | None = None) -> Flask:
    """Build the app from `config_class`, or from the class `APP_ENV` names."""
    app = Flask(__name__)
    app.config.from_object(config_class or config_for_env())
    if app.config.get("OTP_TEMPLATE_FOLDER"):
        # Searched before every blueprint's templates: same-named files override them.
        app.template_folder = app.config["OTP_TEMPLATE_FOLDER"]
    if app.config["APP_ENV"] == "production":
        from .production_guard import check_production_settings

        check_production_settings(app.config)
    os.makedirs(app.instance_path, exist_ok=True)

    trust_proxies(app)
    register_extensions(app)
    register_request_hooks(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    return app


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
    from .celery_app import celery_init_app
    from .extensions import db, jwt, limiter, mail, migrate, redis_store

    db.init_app(app)
    migrate.init_app(app, db)
    mail.init_app(app)
    jwt.init_app(app)
    redis_store.init_app(app)
    limiter.init_app(app)
    celery_init_app(app)


def register_blueprints(app: Flask) -> None:
    from .auth import bp as auth_bp
    from .ops import bp as ops_bp
    from .web import bp as web_bp

    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(ops_bp)
    app.register_blueprint(web_bp)


def register_error_handlers(app: Flask) -> None:
    from .auth.tokens import register_token_error_handlers
    from .errors import register_error_handlers as register_api_error_handlers

    register_api_error_handlers(app)
    register_token_error_handlers(app)


def register_request_hooks(app: Flask) -> None:
    from .logs import init_request_ids
    from .metrics import init_request_metrics

    init_request_ids(app)
    init_request_metrics(app)


def register_commands(app: Flask) -> None:
    from .cli import mail_cli, users_cli

    app.cli.add_command(users_cli)
    app.cli.add_command(mail_cli)
