"""Database models. Users hold no password: signing in proves control of the email."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Normalised address (see app.auth.schemas); unique, so one account per mailbox.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    # Role names such as "admin", copied into access tokens at sign-in and at each
    # refresh, so views check them without a query. A JSON list: one column that
    # works the same on SQLite and PostgreSQL.
    roles: Mapped[list[str]] = mapped_column(
        sa.JSON, default=list, server_default=sa.text("'[]'")
    )

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
        return {
            "id": self.id,
            "email": self.email,
            "created_at": iso(self.created_at),
            "last_login_at": iso(self.last_login_at),
            "roles": list(self.roles or []),
        }


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which are UTC here."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()
