"""What `init_app` binds to one app, kept in `app.extensions["email_signin"]`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app

if TYPE_CHECKING:
    from celery import Celery

    from .audit import AuditLog
    from .i18n import Localization
    from .passkey_store import PasskeyStore
    from .rate_limits import RateLimits
    from .task_publisher import TaskPublisher
    from .users import SQLAlchemyUserStore

EXTENSION_KEY = "email_signin"
API_BLUEPRINT = "email_signin"
PAGES_BLUEPRINT = "email_signin_pages"


@dataclass(frozen=True)
class State:
    redis: Any  # redis.Redis, a lazy RedisCluster or a Sentinel-managed master
    users: SQLAlchemyUserStore
    celery: Celery
    publisher: TaskPublisher
    rate_limits: RateLimits
    localization: Localization
    passkeys: PasskeyStore | None  # None: OTP_PASSKEYS is off
    audit: AuditLog
    # Host callbacks asked before a first sign-in creates an account (see extension).
    before_user_created: list[Any]


def current_state() -> State:
    state = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError("EmailSignIn is not initialised on this app: call init_app(app).")
    return state


def redis_client() -> Any:
    """The current app's state-store client."""
    return current_state().redis


def user_store() -> SQLAlchemyUserStore:
    return current_state().users
