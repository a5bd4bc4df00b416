"""One autocommit database connection per thread, kept checked out, for the hot statements.

Sign-in and the profile read each run one statement. Checking a connection out of
SQLAlchemy's pool, switching it to autocommit, and resetting and returning it
afterwards cost more than the statement's own execution (about 80 of 280 µs
measured); a connection kept by each thread pays that once. A kept connection that
the database dropped (a restart, an idle timeout) is replaced and the statement run
once more: both statements give the same answer when repeated.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")


def _close_all(connections: list[sa.Connection]) -> None:
    """Return every kept connection to its pool (not left for the garbage collector)."""
    for connection in connections:
        try:
            connection.close()
        except Exception:  # noqa: S110 - closing a connection already broken: nothing to do
            pass
    connections.clear()


class KeptConnections:
    """A connection per thread (and process) for whichever engine `run` is given."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[sa.Connection] = []
        weakref.finalize(self, _close_all, self._all)

    def _connection(self, engine: sa.Engine) -> sa.Connection:
        kept = self._local.__dict__
        if kept.get("pid") != os.getpid() or kept.get("engine") is not engine:
            # A forked child never uses its parent's socket; it opens its own.
            if kept.get("pid") == os.getpid():
                self._discard(kept.get("connection"))
            fresh = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            kept.update(pid=os.getpid(), engine=engine, connection=fresh)
            self._all.append(fresh)
        connection: sa.Connection = kept["connection"]
        return connection

    def _discard(self, connection: Any) -> None:
        if connection is None:
            return
        if connection in self._all:
            self._all.remove(connection)
        try:
            connection.close()
        except Exception:  # noqa: S110 - it is being replaced because it broke
            pass

    def run(self, engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
        """`work(connection)` on this thread's connection; once more on a new one if the
        database dropped it."""
        try:
            return work(self._connection(engine))
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        self._discard(self._local.__dict__.pop("connection", None))
        self._local.__dict__.clear()
        return work(self._connection(engine))

    def close(self) -> None:
        _close_all(self._all)
        self._local = threading.local()
