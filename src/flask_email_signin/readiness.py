"""Readiness probes: can this process reach each service a sign-in needs?

Each probe is one cheap round trip bounded by the service's own timeout
(OTP_REDIS_SOCKET_TIMEOUT for Redis; the Celery app's own for the broker). A failure is reported by
service name and error class only: messages can carry URLs with passwords.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from .state import current_state, redis_client


def redis_is_reachable() -> None:
    redis_client().ping()


def database_is_reachable() -> None:
    session = current_state().users.db.session
    try:
        session.execute(sa.text("SELECT 1"))
    finally:
        session.rollback()


def broker_is_reachable() -> None:
    with current_state().celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=0)


PROBES: dict[str, Callable[[], None]] = {
    "redis": redis_is_reachable,
    "database": database_is_reachable,
    "broker": broker_is_reachable,
}


def check_readiness() -> dict[str, str]:
    """Every probe's result: "ok", or the class name of the error it met."""
    results = {}
    for name, probe in PROBES.items():
        try:
            probe()
        except Exception as error:  # any failure means "not ready", whatever its kind
            results[name] = f"unreachable ({type(error).__name__})"
        else:
            results[name] = "ok"
    return results
