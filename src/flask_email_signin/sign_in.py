"""The last step of every sign-in, by code or by link: the user, a session, its cookies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, request

from . import signals
from .session_cookies import set_session_cookies, token_claims
from .sessions import start_session
from .signals import emit
from .signup_policy import signup_allowed
from .state import user_store


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
    user = user_store().sign_in(email, allow_signup=signup_allowed(email))
    access, refresh = start_session(
        user, ip=request.remote_addr, user_agent=request.user_agent.string, method=method
    )
    # A new account's two stamps are the same instant (users.SQLAlchemyUserStore.sign_in).
    if signals.user_created.receivers and user.created_at == user.last_login_at:
        emit(signals.user_created, user_id=user.id, email=user.email)
    if signals.user_signed_in.receivers:
        emit(signals.user_signed_in, user_id=user.id, email=user.email, method=method,
             session_id=str(token_claims(refresh)["sid"]))
    return SignedIn(user, access, refresh)
