"""Passwordless sign-in for Flask: an emailed one-time code and one-click link, JWT sessions.

    from flask_email_signin import EmailSignIn
    EmailSignIn(app)            # or: signin = EmailSignIn(); signin.init_app(app, db=db)

Then protect views with flask-jwt-extended's own `@jwt_required()`. Importing
this package does nothing by itself: no environment is read, no signal is
connected, no socket setting is changed.
"""

from __future__ import annotations

from . import signals
from .celery_app import celery_init_app
from .errors import APIError, SignupRefused
from .extension import EmailSignIn
from .logs import configure_logging
from .metrics import render_metrics, serve_worker_metrics
from .production_guard import UnsafeSettingError
from .readiness import check_readiness
from .roles import current_roles, role_required
from .step_up import fresh_login_required
from .users import SQLAlchemyUserStore, UserMixin, default_user_model
from .webhooks import WebhookSettingError

__version__ = "1.0.0"

__all__ = [
    "APIError",
    "EmailSignIn",
    "SQLAlchemyUserStore",
    "SignupRefused",
    "UnsafeSettingError",
    "UserMixin",
    "WebhookSettingError",
    "celery_init_app",
    "check_readiness",
    "configure_logging",
    "current_roles",
    "default_user_model",
    "fresh_login_required",
    "render_metrics",
    "role_required",
    "serve_worker_metrics",
    "signals",
]
