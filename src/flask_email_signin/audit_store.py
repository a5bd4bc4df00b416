"""The audit log's table and every query on it, in one place.

`email_signin_audit_events` is defined on the host's Flask-SQLAlchemy metadata, so
`db.create_all()` or a migration creates it (the reference deployment's: 0005). It
has no foreign key to the users table on purpose: the events of a deleted account
stay, pseudonymised (see `pseudonymise`), for the retention period.

Rows are written in batches by `audit.AuditLog`, never one by one on a request.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from .users import iso

TABLE_NAME = "email_signin_audit_events"
COPIED_COLUMNS = ("at", "event", "user_id", "email_tag", "ip", "user_agent", "request_id", "detail")
MAX_USER_AGENT_LENGTH = 256

_tables: weakref.WeakKeyDictionary[SQLAlchemy, sa.Table] = weakref.WeakKeyDictionary()


def audit_table(db: SQLAlchemy) -> sa.Table:
    """The audit table on `db`'s metadata, made once per `db`."""
    table = _tables.get(db)
    if table is None:
        table = sa.Table(
            TABLE_NAME,
            db.metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
            sa.Column("event", sa.String(40), nullable=False),
            sa.Column("user_id", sa.Integer, index=True),
            # codes.email_tag of the address: events before an account exists (a wrong
            # code, a request) are found by it, and the address itself is not stored.
            sa.Column("email_tag", sa.String(64), index=True),
            sa.Column("ip", sa.String(45), nullable=False, default=""),
            sa.Column("user_agent", sa.String(MAX_USER_AGENT_LENGTH), nullable=False, default=""),
            sa.Column("request_id", sa.String(64), nullable=False, default=""),
            sa.Column("detail", sa.JSON, nullable=False, default=dict),
        )
        _tables[db] = table
    return table


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    event: str
    user_id: int | None
    email_tag: str | None
    ip: str
    user_agent: str
    request_id: str
    detail: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": iso(self.at), "event": self.event, "user_id": self.user_id,
            "email_tag": self.email_tag, "ip": self.ip, "user_agent": self.user_agent,
            "request_id": self.request_id, "detail": dict(self.detail),
        }


class AuditStore:
    def __init__(self, db: SQLAlchemy, table: sa.Table) -> None:
        self.db, self.table = db, table

    def _connection(self) -> sa.Connection:
        return self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """Write a batch: one COPY on PostgreSQL (psycopg), else one executemany INSERT.

        The batch is written by a background thread, but on the same CPUs as the
        requests: COPY costs a fifth of SQLAlchemy's executemany per row.
        """
        if not rows:
            return
        engine = self.db.engine
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            self._copy(engine, rows)
            return
        with engine.begin() as conn:
            conn.execute(sa.insert(self.table), rows)

    def _copy(self, engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
        columns = COPIED_COLUMNS
        statement = (
            f"COPY {self.table.name} ({', '.join(columns)}) FROM STDIN"
        )
        connection = engine.raw_connection()
        try:
            # psycopg's cursor (a context manager with copy()); the DB-API type has neither.
            cursor: Any = connection.cursor()
            with cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row([
                        json.dumps(row[c]) if c == "detail" else row[c] for c in columns
                    ])
            connection.commit()
        finally:
            connection.close()

    def events(
        self,
        *,
        user_id: int | None = None,
        email_tag: str | None = None,
        event: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        newest_first: bool = True,
    ) -> list[AuditEvent]:
        """Events matching every filter given; `user_id` and `email_tag` together: either."""
        table = self.table
        query = sa.select(table)
        owners = []
        if user_id is not None:
            owners.append(table.c.user_id == user_id)
        if email_tag is not None:
            owners.append(table.c.email_tag == email_tag)
        if owners:
            query = query.where(sa.or_(*owners))
        if event is not None:
            query = query.where(
                table.c.event.like(f"{event[:-1]}%") if event.endswith("*")
                else table.c.event == event
            )
        if since is not None:
            query = query.where(table.c.at >= since)
        if until is not None:
            query = query.where(table.c.at < until)
        order = (table.c.at.desc(), table.c.id.desc()) if newest_first else (table.c.at, table.c.id)
        query = query.order_by(*order)
        if limit is not None:
            query = query.limit(limit)
        with self._connection() as conn:
            return [AuditEvent(**row._mapping) for row in conn.execute(query)]

    def prune(self, before: datetime) -> int:
        """Delete the events older than `before`; returns how many went."""
        with self._connection() as conn:
            return int(conn.execute(sa.delete(self.table).where(self.table.c.at < before)).rowcount)

    def pseudonymise(self, user_id: int, email_tags: Iterable[str]) -> int:
        """Unlink a deleted account's events from it, keeping them for their retention.

        The user id and email tag give way to one random pseudonym (so the events still
        read as one actor's), and each IP address is cut to its network (/24, /48).
        """
        table = self.table
        pseudonym = "deleted:" + secrets.token_hex(8)
        owned = sa.or_(table.c.user_id == user_id, table.c.email_tag.in_(list(email_tags)))
        with self.db.engine.begin() as conn:
            ips = conn.scalars(sa.select(table.c.ip).where(owned).distinct()).all()
            changed = 0
            for ip in ips:  # one UPDATE per address, not per event
                changed += conn.execute(
                    sa.update(table).where(owned, table.c.ip == ip).values(
                        user_id=None, email_tag=pseudonym, ip=network_of(ip)
                    )
                ).rowcount
        return int(changed)


def network_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of `ip`; '' for anything else."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
