"""Passkeys (WebAuthn credentials) in the host's database: one table, next to its users.

`email_signin_passkeys` is defined on the host's Flask-SQLAlchemy metadata, with a
foreign key to its users table (rows go with their user), so `db.create_all()` or
a migration creates it (the reference deployment's: 0004). Every statement is a
Core statement on an autocommit connection, like the users' hot paths.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy

from .users import iso, utcnow

TABLE_NAME = "email_signin_passkeys"
MAX_NAME_LENGTH = 64

_tables: weakref.WeakKeyDictionary[SQLAlchemy, sa.Table] = weakref.WeakKeyDictionary()


def passkey_table(db: SQLAlchemy, users: sa.Table) -> sa.Table:
    """The passkeys table on `db`'s metadata, made once per `db`."""
    table = _tables.get(db)
    if table is None:
        table = sa.Table(
            TABLE_NAME,
            db.metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column(
                "user_id", sa.Integer,
                sa.ForeignKey(f"{users.name}.id", ondelete="CASCADE"), nullable=False, index=True,
            ),
            sa.Column("credential_id", sa.LargeBinary(1023), nullable=False, unique=True),
            sa.Column("public_key", sa.LargeBinary, nullable=False),
            sa.Column("sign_count", sa.BigInteger, nullable=False, default=0),
            sa.Column("transports", sa.JSON, nullable=False, default=list),
            sa.Column("backup_eligible", sa.Boolean, nullable=False, default=False),
            sa.Column("backed_up", sa.Boolean, nullable=False, default=False),
            sa.Column("aaguid", sa.String(36), nullable=False, default=""),
            sa.Column("name", sa.String(MAX_NAME_LENGTH), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_used_at", sa.DateTime(timezone=True)),
        )
        _tables[db] = table
    return table


@dataclass(frozen=True)
class Passkey:
    id: int
    user_id: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    transports: list[str]
    backup_eligible: bool
    backed_up: bool
    name: str
    created_at: datetime
    last_used_at: datetime | None

    def to_public_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "backed_up": self.backed_up,
            "transports": list(self.transports),
        }


class PasskeyStore:
    def __init__(self, db: SQLAlchemy, table: sa.Table) -> None:
        self.db, self.table = db, table

    def _connect(self) -> sa.Connection:
        return self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    @staticmethod
    def _passkey(row: Any) -> Passkey:
        return Passkey(
            id=row.id, user_id=row.user_id, credential_id=bytes(row.credential_id),
            public_key=bytes(row.public_key), sign_count=int(row.sign_count),
            transports=list(row.transports or []), backup_eligible=bool(row.backup_eligible),
            backed_up=bool(row.backed_up), name=row.name, created_at=row.created_at,
            last_used_at=row.last_used_at,
        )

    def of_user(self, user_id: int) -> list[Passkey]:
        table = self.table
        query = sa.select(table).where(table.c.user_id == user_id).order_by(table.c.id)
        with self._connect() as conn:
            return [self._passkey(row) for row in conn.execute(query)]

    def by_credential_id(self, credential_id: bytes) -> Passkey | None:
        table = self.table
        with self._connect() as conn:
            row = conn.execute(
                sa.select(table).where(table.c.credential_id == credential_id)
            ).first()
        return self._passkey(row) if row is not None else None

    def add(
        self, user_id: int, *, credential_id: bytes, public_key: bytes, sign_count: int,
        transports: list[str], backup_eligible: bool, backed_up: bool, aaguid: str, name: str,
    ) -> Passkey | None:
        """The new passkey; None when that credential is already registered."""
        values = {
            "user_id": user_id, "credential_id": credential_id, "public_key": public_key,
            "sign_count": sign_count, "transports": transports,
            "backup_eligible": backup_eligible, "backed_up": backed_up, "aaguid": aaguid,
            "name": name[:MAX_NAME_LENGTH], "created_at": utcnow(), "last_used_at": None,
        }
        try:
            with self._connect() as conn:
                row_id = conn.execute(
                    sa.insert(self.table).values(values).returning(self.table.c.id)
                ).scalar_one()
        except sa.exc.IntegrityError:
            return None
        return self._passkey(_Values({**values, "id": row_id}))

    def record_use(self, passkey_id: int, *, sign_count: int, backed_up: bool) -> None:
        table = self.table
        with self._connect() as conn:
            conn.execute(
                sa.update(table).where(table.c.id == passkey_id)
                .values(sign_count=sign_count, backed_up=backed_up, last_used_at=utcnow())
            )

    def rename(self, user_id: int, passkey_id: int, name: str) -> Passkey | None:
        table = self.table
        with self._connect() as conn:
            row = conn.execute(
                sa.update(table)
                .where(table.c.id == passkey_id, table.c.user_id == user_id)
                .values(name=name[:MAX_NAME_LENGTH])
                .returning(*table.c)
            ).first()
        return self._passkey(row) if row is not None else None

    def delete(self, user_id: int, passkey_id: int) -> bool:
        table = self.table
        with self._connect() as conn:
            deleted = conn.execute(
                sa.delete(table).where(table.c.id == passkey_id, table.c.user_id == user_id)
            ).rowcount
        return bool(deleted)

    def delete_all(self, user_id: int, *, created_after: datetime | None = None) -> int:
        """Delete the user's passkeys (only those made after `created_after`, if given)."""
        table = self.table
        statement = sa.delete(table).where(table.c.user_id == user_id)
        if created_after is not None:
            statement = statement.where(table.c.created_at > created_after)
        with self._connect() as conn:
            return int(conn.execute(statement).rowcount)


class _Values:
    """Attribute access over a dict of column values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
