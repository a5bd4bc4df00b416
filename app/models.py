"""The reference deployment's models: its users, with the columns sign-in needs."""

from __future__ import annotations

from flask_email_signin import UserMixin

from .extensions import db


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    """An account; it holds no password (signing in proves control of the email)."""

    __tablename__ = "users"
