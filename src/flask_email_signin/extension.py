"""`EmailSignIn`: the one entry point a host app uses.

    signin = EmailSignIn()
    signin.init_app(app, db=db, user_model=User)

`init_app` wires everything on the app it is given and keeps nothing of it on
the extension object (one object may serve several apps):

- every setting's default (`settings.DEFAULTS`), and the production guard;
- the API blueprint at OTP_URL_PREFIX, and the pages next to it when OTP_PAGES;
- the session check on the app's flask-jwt-extended manager, the host's own or
  one made here, so revocation holds on every `@jwt_required()` view;
- the Redis store, the per-IP limits, Flask-Mail (unless the host bound it);
- the email task on the app's Celery app (one is made when there is none), and
  the webhook task, its endpoints checked and fed by the audit log (OTP_WEBHOOKS);
- the CLI groups, and the JSON envelope (on our blueprints, or app-wide);
- OpenTelemetry instrumentation when OTP_TRACING (see tracing).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any, cast

from celery import Celery
from flask import Flask
from flask_jwt_extended import JWTManager
from flask_mail import Mail
from flask_sqlalchemy import SQLAlchemy

from . import account_api, api, pages, passkey_api
from .audit import AuditLog, install_process_hooks
from .audit_store import AuditStore, audit_table
from .celery_app import celery_init_app
from .cli import audit_cli, mail_cli, users_cli
from .error_handlers import (
    handle_api_error,
    register_error_handlers,
    register_token_error_handlers,
)
from .errors import FreshLoginRequired
from .i18n import init_localization
from .jwt_callbacks import ensure_session_check, install_session_check
from .lean_tokens import install_lean_tokens
from .passkey_store import PasskeyStore, passkey_table
from .production_guard import (
    check_production_settings,
    is_production,
    passkey_setting_problem,
)
from .rate_limits import build_rate_limits
from .redis_client import redis_from_url
from .settings import apply_defaults
from .state import EXTENSION_KEY, State
from .task_publisher import TaskPublisher
from .tasks import SEND_LOGIN_CODE, register_tasks
from .tracing import instrument_app
from .users import SQLAlchemyUserStore, default_user_model
from .webhook_delivery import register_webhook_task
from .webhooks import check_webhook_settings, queue_webhooks

log = logging.getLogger(__name__)
BeforeUserCreated = Callable[[str], None]


class EmailSignIn:
    """Passwordless sign-in by emailed code and one-click link, with JWT sessions.

    Options (keyword-only, in `__init__` or `init_app`; `init_app`'s win):

    - `db`: the host's Flask-SQLAlchemy object (default: `app.extensions["sqlalchemy"]`).
    - `user_model`: the host's user model, with `UserMixin`'s columns (default: a
      `users` table made on `db` by `default_user_model`).
    - `celery`: the Celery app that runs the email task (default:
      `app.extensions["celery"]`, else one made by `celery_init_app`).

    Settings are read from `app.config`; every key and default is in `settings.py`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        user_model: type | None = None,
        celery: Celery | None = None,
    ) -> None:
        self._db, self._user_model, self._celery = db, user_model, celery
        self._before_user_created: list[BeforeUserCreated] = []
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        db: SQLAlchemy | None = None,
        user_model: type | None = None,
        celery: Celery | None = None,
    ) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "EmailSignIn is already registered on this app. Call init_app once per app "
                "(or pass the app to EmailSignIn(app), not both)."
            )
        config = app.config
        apply_defaults(config)
        webhook_endpoints = check_webhook_settings(config)
        if is_production(config, debug=app.debug, testing=app.testing):
            check_production_settings(config)
        if config["OTP_PASSKEYS"] and (problem := passkey_setting_problem(config)):
            # Not unsafe: the rest works, and passkeys will not until this is fixed.
            log.warning("passkeys will not work: %s", problem)
        tracing = bool(config["OTP_TRACING"])
        if tracing:
            # First, so the request span's before_request runs before the extension's own.
            instrument_app(app, task_name=SEND_LOGIN_CODE)

        users = SQLAlchemyUserStore(*self._database(app, db, user_model))
        manager = self._jwt_manager(app)
        install_session_check(manager)
        install_lean_tokens(manager)
        app.before_request(ensure_session_check)
        if "mail" not in app.extensions:
            Mail(app)
        celery_app = celery or self._celery or app.extensions.get("celery")
        if celery_app is None:
            celery_app = celery_init_app(app)
        register_tasks(celery_app, app)
        register_webhook_task(celery_app, app)

        prefix = config["OTP_URL_PREFIX"].rstrip("/") or None
        app.register_blueprint(api.bp, url_prefix=prefix)
        app.register_blueprint(account_api.bp, url_prefix=prefix)
        passkey_table_ = None
        if config["OTP_PASSKEYS"]:
            app.register_blueprint(passkey_api.bp, url_prefix=prefix)
            passkey_table_ = passkey_table(users.db, users.model.__table__)
        # A host's own view under fresh_login_required answers in the envelope too.
        app.register_error_handler(FreshLoginRequired, handle_api_error)
        if config["OTP_PAGES"]:
            app.register_blueprint(pages.bp, url_prefix=prefix)
            if config["OTP_SIGNIN_PAGE_AT_ROOT"]:
                # An endpoint of the pages blueprint, so its headers and handlers apply.
                app.add_url_rule(
                    "/", endpoint=f"{pages.bp.name}.root_sign_in_page",
                    view_func=pages.sign_in_page,
                )
        if config["OTP_JSON_ERRORS_APP_WIDE"]:
            register_error_handlers(app)
        for group, name in ((users_cli, config["OTP_CLI_USERS_NAME"]),
                            (mail_cli, config["OTP_CLI_MAIL_NAME"]),
                            (audit_cli, config["OTP_CLI_AUDIT_NAME"])):
            if name:
                app.cli.add_command(group, name=name)

        app.extensions[EXTENSION_KEY] = state = State(
            redis=redis_from_url(
                config["OTP_REDIS_URL"],
                cluster=bool(config["OTP_REDIS_CLUSTER"]),
                timeout=float(config["OTP_REDIS_SOCKET_TIMEOUT"]),
                retry_seconds=float(config["OTP_REDIS_RETRY_SECONDS"]),
                lean=not tracing,
            ),
            users=users,
            celery=celery_app,
            publisher=TaskPublisher(
                celery_app, timeout=float(config["OTP_REDIS_SOCKET_TIMEOUT"]), tracing=tracing
            ),
            rate_limits=build_rate_limits(config),
            localization=init_localization(app),
            passkeys=PasskeyStore(users.db, passkey_table_) if passkey_table_ is not None else None,
            audit=AuditLog(
                app=weakref.ref(app),
                store=AuditStore(users.db, audit_table(users.db)),
                enabled=bool(config["OTP_AUDIT_LOG"]),
                flush_seconds=float(config["OTP_AUDIT_FLUSH_SECONDS"]),
                max_buffered=int(config["OTP_AUDIT_MAX_BUFFERED"]),
            ),
            before_user_created=self._before_user_created,
        )
        if webhook_endpoints:
            # Queued from the audit log's flusher, after each batch: off the requests.
            state.audit.listeners.append(queue_webhooks)
        install_process_hooks()

    def before_user_created(self, callback: BeforeUserCreated) -> BeforeUserCreated:
        """Register `callback(email)`, asked before a first sign-in creates an account.

        It returns None to let the account be made, or raises `SignupRefused(message)`
        to refuse it: the person (who has just proven the address) sees that message.
        Registered on the extension object, it applies to every app it is bound to.
        """
        self._before_user_created.append(callback)
        return callback

    def _database(
        self, app: Flask, db: SQLAlchemy | None, user_model: type | None
    ) -> tuple[SQLAlchemy, type]:
        found: object = db or self._db or app.extensions.get("sqlalchemy")
        if not isinstance(found, SQLAlchemy):
            raise RuntimeError(
                "EmailSignIn stores users with Flask-SQLAlchemy: call db.init_app(app) "
                "before init_app, or pass db=..."
            )
        if app.extensions.get("sqlalchemy") is not found:
            raise RuntimeError("The db passed to EmailSignIn is not bound to this app.")
        bound = cast(SQLAlchemy, found)
        return bound, user_model or self._user_model or default_user_model(bound)

    @staticmethod
    def _jwt_manager(app: Flask) -> JWTManager:
        """The app's own JWTManager; one made here (answering in our envelope) when none."""
        manager: Any = app.extensions.get("flask-jwt-extended")
        if manager is None:
            manager = JWTManager(app)
            register_token_error_handlers(app)
        if "cookies" not in manager_token_locations(app) and app.config["OTP_PAGES"]:
            raise RuntimeError(
                "The sign-in pages keep their session in cookies, but JWT_TOKEN_LOCATION "
                f"is {app.config['JWT_TOKEN_LOCATION']!r}. Set JWT_TOKEN_LOCATION = "
                "['cookies', 'headers'] (or OTP_PAGES = False for an API-only host)."
            )
        return manager


def manager_token_locations(app: Flask) -> list[str]:
    locations = app.config["JWT_TOKEN_LOCATION"]
    return [locations] if isinstance(locations, str) else list(locations)
