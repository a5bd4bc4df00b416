"""Users belong to the host: its Flask-SQLAlchemy `db`, its `User` model, behind one store.

A host model gets the columns the extension needs from `UserMixin`; a host
without a model gets `default_user_model(db)`, a `users` table built from the
same mixin. Everything the extension does with users goes through
`SQLAlchemyUserStore` (find, get, create, sign-in stamp, activation, roles), the
way Flask-Security's datastores stand between it and the host's models. Users
hold no password: signing in proves control of the email.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from .errors import AccountInactive, SignupClosed
from .kept_connections import DriverQuery, KeptConnections


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which are UTC here."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


class UserMixin:
    """The columns the extension reads and writes; mix into the host's own model.

    `email` holds the normalised address (see schemas.NormalisedEmail) and is
    unique, so one mailbox is one account. `roles` is a JSON list of role
    names, copied into access tokens so views check roles without a query.
    """

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    roles: Mapped[list[str]] = mapped_column(sa.JSON, default=list, server_default=sa.text("'[]'"))
    # The user's language (a catalogue's locale name, "pt_BR"); None: Accept-Language decides.
    locale: Mapped[str | None] = mapped_column(sa.String(35))

    def grant_role(self, role: str) -> bool:
        """Add `role`; False if the user already had it."""
        if role in self.roles:
            return False
        self.roles = sorted({*self.roles, role})  # a new list, so the change is tracked
        return True

    def revoke_role(self, role: str) -> bool:
        """Remove `role`; False if the user did not have it."""
        if role not in self.roles:
            return False
        self.roles = [r for r in self.roles if r != role]
        return True

    def to_public_dict(self) -> dict[str, object]:
        return public_profile(self)


def public_profile(user: Any) -> dict[str, object]:
    """What a user sees of their account: from a model instance or a result row alike."""
    return {
        "id": user.id,
        "email": user.email,
        "created_at": iso(user.created_at),
        "last_login_at": iso(user.last_login_at),
        "roles": list(user.roles or []),
        "locale": user.locale,
    }


class User(Protocol):
    """What the extension needs of a user object (UserMixin provides it)."""

    id: int
    email: str
    created_at: datetime
    last_login_at: datetime | None
    is_active: bool
    roles: list[str]
    locale: str | None

    def grant_role(self, role: str) -> bool: ...
    def revoke_role(self, role: str) -> bool: ...
    def to_public_dict(self) -> dict[str, object]: ...


_default_models: weakref.WeakKeyDictionary[SQLAlchemy, type] = weakref.WeakKeyDictionary()


def default_user_model(db: SQLAlchemy) -> type:
    """The built-in `users` model on `db`, made once per `db`."""
    model = _default_models.get(db)
    if model is None:
        model = type(
            "User", (UserMixin, db.Model), {"__tablename__": "users", "__module__": __name__}
        )
        _default_models[db] = model
    return model


# Dialects whose INSERT ... ON CONFLICT DO UPDATE ... RETURNING signs a user in at once.
UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
PROFILE_COLUMNS = ("id", "email", "created_at", "last_login_at", "is_active", "roles", "locale")


@dataclass
class _Statements:
    """The hot paths' statements, built once per table (bound by parameters, so SQLAlchemy
    compiles each once too)."""

    table: sa.Table
    profile: sa.Select[Any]
    stamp: sa.Update
    exists: sa.Select[Any]
    upserts: dict[Any, Any]

    @classmethod
    def for_table(cls, table: sa.Table) -> _Statements:
        columns = [table.c[name] for name in PROFILE_COLUMNS]
        email: Any = sa.bindparam("address")
        now: Any = sa.bindparam("now")
        return cls(
            table=table,
            profile=sa.select(*columns).where(table.c.id == sa.bindparam("user_id")),
            stamp=sa.update(table)
            .where(table.c.email == email, table.c.is_active)
            .values(last_login_at=now)
            .returning(*columns),
            exists=sa.select(table.c.id).where(table.c.email == email),
            upserts={},
        )

    def upsert(self, insert: Any) -> Any:
        """INSERT the account, or stamp the time of an active one; RETURNING the profile."""
        statement = self.upserts.get(insert)
        if statement is None:
            table = self.table
            values = insert(table).values(
                email=sa.bindparam("address"),
                created_at=sa.bindparam("now"),
                last_login_at=sa.bindparam("now"),
            )
            statement = values.on_conflict_do_update(
                index_elements=[table.c.email],
                set_={"last_login_at": values.excluded.last_login_at},
                where=table.c.is_active,
            ).returning(*(table.c[name] for name in PROFILE_COLUMNS))
            self.upserts[insert] = statement
        return statement


@dataclass(frozen=True)
class MailRecipient:
    may_sign_in: bool
    locale: str | None


class SQLAlchemyUserStore:
    """Find, create and update users of `model` through `db.session`.

    The two hot paths, sign-in and the profile read, run one Core statement on an
    autocommit connection kept by each thread instead (no ORM unit of work, no
    BEGIN/COMMIT round trips, no pool checkout; see kept_connections): they return
    result rows with the profile's columns, not model objects.
    """

    def __init__(self, db: SQLAlchemy, model: type) -> None:
        missing = [name for name in ("email", "is_active", "roles", "last_login_at", "locale")
                   if not hasattr(model, name)]
        if missing:
            raise TypeError(
                f"{model.__name__} lacks {', '.join(missing)}: mix "
                "flask_email_signin.UserMixin into it."
            )
        self.db = db
        self.model: Any = model  # a mapped class with UserMixin's columns
        self._kept = KeptConnections()  # the hot statements' connections

    def find(self, email: str) -> Any | None:
        return self.db.session.scalar(sa.select(self.model).where(self.model.email == email))

    def get(self, user_id: int) -> Any | None:
        return self.db.session.get(self.model, user_id)

    def exists(self, email: str) -> bool:
        query = sa.select(self.model.id).where(self.model.email == email)
        return self.db.session.scalar(query) is not None

    def all(self, *, active: bool | None = None) -> list[Any]:
        query = sa.select(self.model).order_by(self.model.id)
        if active is not None:
            query = query.where(self.model.is_active.is_(active))
        return list(self.db.session.scalars(query))

    def create(self, email: str, *, active: bool = True, roles: Iterable[str] = ()) -> Any:
        user = self.model(email=email, is_active=active, roles=sorted(set(roles)))
        self.db.session.add(user)
        self.db.session.commit()
        return user

    def save(self, _user: Any) -> None:
        """Commit changes made to a user (activation, roles)."""
        self.db.session.commit()

    def may_sign_in(self, email: str, *, allow_signup: bool) -> bool:
        """Whether a code sent to `email` could sign someone in."""
        if allow_signup:
            return True
        user = self.find(email)
        return user is not None and bool(user.is_active)

    def mail_recipient(self, email: str, *, allow_signup: bool) -> MailRecipient:
        """Whether a code sent to `email` could sign someone in, and the account's language."""
        query = sa.select(self.model.is_active, self.model.locale).where(
            self.model.email == email
        )
        row = self.db.session.execute(query).first()
        if row is None:
            return MailRecipient(may_sign_in=allow_signup, locale=None)
        # With sign-up open, a deactivated account gets its email too, and is refused at
        # sign-in with its own message (as may_sign_in decides).
        return MailRecipient(may_sign_in=allow_signup or bool(row.is_active), locale=row.locale)

    def set_locale(self, user_id: int, locale: str | None) -> bool:
        """Store the user's language; False when there is no such user."""
        user = self.get(user_id)
        if user is None:
            return False
        user.locale = locale
        self.db.session.commit()
        return True

    def row(self, user_id: int) -> dict[str, Any] | None:
        """Every column of the user's row, the host's own included (for the export)."""
        table = self.model.__table__
        with self._autocommit() as conn:
            found = conn.execute(sa.select(table).where(table.c.id == user_id)).first()
        return dict(found._mapping) if found is not None else None

    def delete(self, user_id: int) -> bool:
        table = self.model.__table__
        with self._autocommit() as conn:
            return bool(conn.execute(sa.delete(table).where(table.c.id == user_id)).rowcount)

    def change_email(self, user_id: int, email: str, *, expected: str | None = None) -> bool:
        """Set the address (unique); False when another account has it, or when the
        current address is no longer `expected` (a concurrent change won)."""
        table = self.model.__table__
        statement = sa.update(table).where(table.c.id == user_id).values(email=email)
        if expected is not None:
            statement = statement.where(table.c.email == expected)
        try:
            with self._autocommit() as conn:
                return bool(conn.execute(statement).rowcount)
        except IntegrityError:
            return False

    @functools.cached_property
    def _statements(self) -> _Statements:
        return _Statements.for_table(self.model.__table__)

    def _autocommit(self) -> sa.Connection:
        return self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    @functools.cached_property
    def _profile_query(self) -> DriverQuery | None:
        return DriverQuery.for_statement(self._statements.profile, self.db.engine.dialect)

    def profile(self, user_id: int) -> Any | None:
        """The user's profile columns (a row), in one autocommit SELECT (on PostgreSQL with
        psycopg, through the driver's cursor: see kept_connections.DriverQuery)."""
        parameters = {"user_id": user_id}
        query, statement = self._profile_query, self._statements.profile

        def read(conn: sa.Connection) -> Any:
            if query is not None and not DriverQuery.observed(conn):
                return query.first(conn, parameters)
            return conn.execute(statement, parameters).first()

        return self._kept.run(self.db.engine, read)

    def sign_in(self, email: str, *, allow_signup: bool) -> Any:
        """The first sign-in creates the account; later ones stamp the time.

        One statement on PostgreSQL and SQLite: an upsert that inserts the account
        with its sign-in time, or stamps the time of an active one, and returns the
        row (none for a deactivated account, which is then refused). Other
        databases take the ORM path below.
        """
        dialect = self.db.engine.dialect
        upsert = UPSERTS.get(dialect.name)
        if upsert is None or not (dialect.insert_returning and dialect.update_returning):
            return self._sign_in_by_session(email, allow_signup=allow_signup)
        statements = self._statements
        statement = statements.upsert(upsert) if allow_signup else statements.stamp
        now = utcnow()

        def sign_in(conn: sa.Connection) -> tuple[Any, Any]:
            row = conn.execute(statement, {"address": email, "now": now}).first()
            if row is not None:
                return row, None
            return None, conn.execute(statements.exists, {"address": email}).first()

        row, exists = self._kept.run(self.db.engine, sign_in)
        if row is not None:
            return row
        raise AccountInactive() if exists is not None else SignupClosed()

    def _sign_in_by_session(self, email: str, *, allow_signup: bool) -> Any:
        session, now = self.db.session, utcnow()
        user = self.find(email)
        if user is None:
            if not allow_signup:
                raise SignupClosed()
            user = self.model(email=email, created_at=now, last_login_at=now)
            session.add(user)
            try:
                session.commit()
                return user
            except IntegrityError:  # created concurrently by another sign-in
                session.rollback()
                user = self.find(email)
                assert user is not None
        if not user.is_active:
            session.rollback()
            raise AccountInactive()
        user.last_login_at = now
        session.commit()
        return user
