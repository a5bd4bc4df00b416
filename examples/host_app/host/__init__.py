"""A small Flask app that adopts flask_email_signin the way any existing app would.

It has its own database, user model, JWT manager, Celery app and error pages;
the extension adds sign-in by emailed code or link under /account and makes the
app's own `@jwt_required()` views refuse the tokens of ended sessions.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from flask import Flask
from flask_jwt_extended import JWTManager, get_jwt_identity, jwt_required
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from flask_email_signin import EmailSignIn, UserMixin

db = SQLAlchemy()
jwt = JWTManager()
signin = EmailSignIn()


class User(UserMixin, db.Model):
    """The app's accounts: the extension's columns plus the app's own."""

    __tablename__ = "accounts"
    display_name: Mapped[str | None] = mapped_column(String(80))


def settings_from_environment() -> dict[str, Any]:
    """The app's settings, from environment variables."""
    env = os.environ.get
    return {
        "SECRET_KEY": env("SECRET_KEY"),
        "JWT_SECRET_KEY": env("JWT_SECRET_KEY"),
        # Cookies for the sign-in pages, headers for API clients; Secure cookies (the
        # production check requires them; a host on plain http in development turns it off).
        "JWT_TOKEN_LOCATION": ["cookies", "headers"],
        "JWT_COOKIE_SECURE": True,
        "SQLALCHEMY_DATABASE_URI": env("DATABASE_URL", "sqlite:///host.db"),
        "CELERY_BROKER_URL": env("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1"),
        "MAIL_SERVER": env("MAIL_SERVER", "localhost"),
        "MAIL_PORT": int(env("MAIL_PORT", "25")),
        "MAIL_DEFAULT_SENDER": env("MAIL_DEFAULT_SENDER", "Host <no-reply@host.example>"),
        # The extension's settings (all optional; flask_email_signin/settings.py lists them).
        "OTP_URL_PREFIX": "/account",
        "OTP_REDIS_URL": env("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "OTP_LINK_BASE_URL": env("LINK_BASE_URL", "http://127.0.0.1:8000"),
        "OTP_RATE_LIMIT_REQUEST": env("OTP_RATE_LIMIT_REQUEST", "20 per 10 minutes"),
        # The production check: "1" on, "0" off, unset: on unless debug or testing.
        "OTP_PRODUCTION": {"1": True, "0": False}.get(env("HOST_PRODUCTION", "")),
    }


def celery_init_app(app: Flask) -> Celery:
    """Flask's documented pattern: tasks run inside the app context."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(broker_url=app.config["CELERY_BROKER_URL"], task_ignore_result=True)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(settings_from_environment())
    app.config.update(config or {})

    db.init_app(app)
    jwt.init_app(app)  # before the extension, which adds its session check to this manager
    celery = celery_init_app(app)
    signin.init_app(app, db=db, user_model=User, celery=celery)
    with app.app_context():
        # For brevity. A real app keeps its schema in migrations: `flask db migrate`
        # (Flask-Migrate/Alembic) autogenerates the `accounts` table from db.metadata.
        db.create_all()

    @app.get("/")
    def home() -> str:
        return '<!doctype html><title>Host</title><a href="/account/login">Sign in</a>'

    @app.get("/dashboard")
    @jwt_required()
    def dashboard() -> dict[str, Any]:
        user = db.get_or_404(User, int(get_jwt_identity()))
        return {"user_id": get_jwt_identity(), "name": user.display_name or user.email}

    @app.errorhandler(404)
    def not_found(_error: Exception) -> tuple[str, int]:
        return "<!doctype html><title>Not found</title><h1>Host: no such page</h1>", 404

    return app
