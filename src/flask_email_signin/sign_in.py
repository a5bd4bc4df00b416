"""The last step of every sign-in, by code or by link: the user, a session, its cookies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, request

from . import audit, signals
from .errors import SignupRefused
from .session_cookies import set_session_cookies, token_claims
from .sessions import start_session
from .signals import emit
from .signup_policy import signup_allowed
from .state import current_state, user_store


@dataclass(frozen=True)
class SignedIn:
    user: Any
    access_token: str
    refresh_token: str

    def set_cookies(self, response: Response) -> None:
        set_session_cookies(response, self.access_token, self.refresh_token)


def complete_sign_in(email: str, method: str = "code") -> SignedIn:
    """Find or create the user of a proven email and start a session for this client.

    `method`: how the email was proven (code, link, approval, passkey), shown in the
    sessions list.
    """
    allow_signup = signup_allowed(email)
    if allow_signup and current_state().before_user_created:
        ask_before_creating(email)
    user = user_store().sign_in(email, allow_signup=allow_signup)
    access, refresh = start_session(
        user, ip=request.remote_addr, user_agent=request.user_agent.string, method=method
    )
    sid = str(token_claims(refresh)["sid"])
    # A new account's two stamps are the same instant (users.SQLAlchemyUserStore.sign_in).
    if user.created_at == user.last_login_at:
        audit.record(audit.USER_CREATED, user_id=user.id, email=user.email)
        emit(signals.user_created, user_id=user.id, email=user.email)
    audit.record(
        audit.SESSION_STARTED, user_id=user.id, email=user.email,
        detail={"method": method, "session_id": sid},
    )
    if signals.user_signed_in.receivers:
        emit(signals.user_signed_in, user_id=user.id, email=user.email, method=method,
             session_id=sid)
    return SignedIn(user, access, refresh)


def ask_before_creating(email: str) -> None:
    """Run the host's `before_user_created` callbacks when `email` has no account yet.

    One extra query, on sign-ins only, and only when a callback is registered. A
    callback refuses by raising SignupRefused (its message reaches the person, who
    has just proven the address, so no one learns anything about others).
    """
    if user_store().exists(email):
        return
    for callback in current_state().before_user_created:
        try:
            callback(email)
        except SignupRefused:
            audit.record(audit.SIGNUP_REFUSED, email=email, detail={"by": "host"})
            raise
