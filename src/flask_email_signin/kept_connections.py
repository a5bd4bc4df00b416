"""One autocommit database connection per thread, kept checked out, for the hot statements.

Sign-in and the profile read each run one statement. Checking a connection out of
SQLAlchemy's pool, switching it to autocommit, and resetting and returning it
afterwards cost more than the statement's own execution (about 80 of 280 µs
measured); a connection kept by each thread pays that once. A kept connection that
the database dropped (a restart, an idle timeout) is replaced and the statement run
once more: both statements give the same answer when repeated.

`DriverQuery` goes one level lower for a statement SQLAlchemy would pass through
untouched (psycopg, no parameter or column conversion): its SQL is compiled once and
run on the kept connection's own DBAPI cursor, skipping Core's per-execution set-up
(about half of the profile read's cost on PostgreSQL). Whenever something listens to
SQLAlchemy's cursor events (the tracing instrumentation, a host's query log, a
statement counter), Core runs the statement instead, so they see it.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from .per_thread import PerThread

T = TypeVar("T")


def _connect(engine: Any) -> sa.Connection:
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _close(connection: sa.Connection) -> None:
    connection.close()  # back to its pool


class KeptConnections:
    """A connection per thread (and process) for whichever engine `run` is given."""

    def __init__(self) -> None:
        self._connections = PerThread(_connect, _close)

    def run(self, engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
        """`work(connection)` on this thread's connection; once more on a new one if the
        database dropped it."""
        try:
            return work(self._connections.get(engine))
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        self._connections.drop()
        return work(self._connections.get(engine))

    def close(self) -> None:
        """Return every thread's connection to its pool."""
        self._connections.release_all()


class DriverQuery:
    """A statement run with the driver's cursor, returning rows with named columns."""

    def __init__(self, sql: str, columns: list[str]) -> None:
        self.sql = sql
        self.row_type = namedtuple("Row", columns)  # type: ignore[misc]

    @classmethod
    def for_statement(cls, statement: sa.Select[Any], dialect: Any) -> DriverQuery | None:
        """The statement's driver form, when Core would convert nothing (else None: Core
        then runs it, as with SQLite, whose dates Core parses from text)."""
        if dialect.driver != "psycopg":
            return None
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is not None:
            return None
        for bind in compiled.binds.values():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                return None
        columns = list(statement.selected_columns)
        for column in columns:
            if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
                return None
        return cls(str(compiled), [str(column.key) for column in columns])

    @staticmethod
    def observed(connection: sa.Connection) -> bool:
        """Whether a listener of SQLAlchemy's cursor events would miss a driver-level run."""
        events = connection.dispatch
        return bool(events.before_cursor_execute or events.after_cursor_execute)

    def first(self, connection: sa.Connection, parameters: Mapping[str, Any]) -> Any:
        """The first row, or None; a dropped connection raises as Core would (invalidated)."""
        dialect = connection.dialect
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = None
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute(self.sql, parameters)
            row = cursor.fetchone()
        except dialect.loaded_dbapi.Error as error:
            dropped = dialect.is_disconnect(error, dbapi_connection, cursor)
            if dropped:
                connection.invalidate(error)
            raise sa.exc.DBAPIError.instance(
                self.sql, parameters, error, dialect.loaded_dbapi.Error,
                connection_invalidated=dropped,
            ) from error
        finally:
            if cursor is not None:
                cursor.close()
        return None if row is None else self.row_type(*row)
