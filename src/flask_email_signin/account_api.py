"""The account's own life: its address, its data, its recent activity.

    POST   <prefix>/email-change               recent authentication: code to the new address
    POST   <prefix>/email-change/confirm       signed in: the code, and the address changes
    POST   <prefix>/email-change/confirm-link  the emailed link's page (no session needed)
    POST   <prefix>/email-change/undo          the old address's "this wasn't me" link
    GET    <prefix>/me/export                  signed in: everything stored, as JSON
    DELETE <prefix>/me                         recent authentication: delete the account
    GET    <prefix>/me/activity                signed in: recent sign-in activity
"""

from __future__ import annotations

from flask import Response, jsonify
from flask_jwt_extended import get_jwt, get_jwt_identity, jwt_required, unset_jwt_cookies

from . import account_data, audit, email_change
from .blueprints import extension_blueprint
from .codes import email_tag
from .errors import AccountNotFound
from .i18n import gettext, locale_name
from .json_body import load_json_body
from .rate_limits import rate_limited
from .schemas import (
    ActivityListSchema,
    EmailChangeCodeSchema,
    EmailChangedSchema,
    EmailChangeLinkSchema,
    EmailChangeRequestedSchema,
    EmailChangeSchema,
)
from .state import API_BLUEPRINT, current_state, user_store
from .step_up import fresh_login_required
from .user_agents import describe_device

bp = extension_blueprint(f"{API_BLUEPRINT}_account", __name__)

email_change_schema = EmailChangeSchema()
email_change_code_schema = EmailChangeCodeSchema()
email_change_link_schema = EmailChangeLinkSchema()
email_change_requested_schema = EmailChangeRequestedSchema()
email_changed_schema = EmailChangedSchema()
activity_list_schema = ActivityListSchema()

ACTIVITY_EVENTS = frozenset({
    audit.SESSION_STARTED, audit.SESSION_ENDED, audit.CODE_WRONG, audit.CODE_LOCKED,
    audit.LINK_USED, audit.EMAIL_CHANGED, audit.EMAIL_CHANGE_UNDONE, audit.PASSKEY_REGISTERED,
    audit.PASSKEY_DELETED,
})
ACTIVITY_LIMIT = 20


def _signed_in() -> tuple[int, str]:
    return int(get_jwt_identity()), str(get_jwt()["sid"])


def _current_email(user_id: int) -> str:
    row = user_store().profile(user_id)
    if row is None:
        raise AccountNotFound()
    return str(row.email)


@bp.post("/email-change")
@rate_limited("OTP_RATE_LIMIT_EMAIL_CHANGE")
@fresh_login_required()
def request_email_change() -> tuple[Response, int]:
    """Send a code and link to the new address (a notice instead, if it has an account)."""
    body = load_json_body(email_change_schema)
    user_id, sid = _signed_in()
    requested = email_change.request_email_change(
        user_id, _current_email(user_id), body["email"], session_id=sid, locale=locale_name()
    )
    payload = {
        "message": gettext("If the address can be used, a code is on its way to it."),
        "expires_in": requested.expires_in,
    }
    return jsonify(email_change_requested_schema.dump(payload)), 202


@bp.post("/email-change/confirm")
@rate_limited("OTP_RATE_LIMIT_VERIFY")
@jwt_required()
def confirm_email_change() -> Response:
    """Change the address with the code sent to it; every other session ends."""
    body = load_json_body(email_change_code_schema)
    user_id, _sid = _signed_in()
    new_email = email_change.confirm_with_code(user_id, body["otp"])
    return _changed(gettext("Your address was changed."), new_email)


@bp.post("/email-change/confirm-link")
@rate_limited("OTP_RATE_LIMIT_LINK")
def confirm_email_change_by_link() -> Response:
    """Change the address from the link sent to it (the page posts the link's secret)."""
    body = load_json_body(email_change_link_schema)
    new_email = email_change.confirm_with_link(body["user_id"], body["secret"])
    return _changed(gettext("Your address was changed."), new_email)


@bp.post("/email-change/undo")
@rate_limited("OTP_RATE_LIMIT_LINK")
def undo_email_change() -> Response:
    """Put the old address back ("this wasn't me"); every session ends."""
    body = load_json_body(email_change_link_schema)
    old_email = email_change.undo_email_change(body["user_id"], body["secret"])
    response = _changed(
        gettext("Your address is back, and every device was signed out."), old_email
    )
    unset_jwt_cookies(response)
    return response


def _changed(message: str, email: str) -> Response:
    return jsonify(email_changed_schema.dump({"message": message, "email": email}))


@bp.get("/me/export")
@jwt_required()
def export_account() -> Response:
    """Everything stored about the user, as one JSON document (a download)."""
    user_id, _sid = _signed_in()
    response = jsonify(account_data.export_account(user_id))
    response.headers["Content-Disposition"] = 'attachment; filename="account-export.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.delete("/me")
@fresh_login_required()
def delete_account() -> Response:
    """Delete the account and everything of it (audit events stay, pseudonymised)."""
    user_id, _sid = _signed_in()
    account_data.delete_account(user_id, by="user")
    response = jsonify({"message": gettext("Your account was deleted.")})
    unset_jwt_cookies(response)
    return response


@bp.get("/me/activity")
@jwt_required()
def activity() -> Response:
    """The user's recent sign-in activity, newest first (sign-ins, failed codes, ...)."""
    user_id, sid = _signed_in()
    state = current_state()
    state.audit.flush()  # this process's newest events too
    events = state.audit.store.events(
        user_id=user_id, email_tag=email_tag(_current_email(user_id)), limit=ACTIVITY_LIMIT * 3
    )
    shown = [
        {
            "at": event.to_dict()["at"],
            "event": event.event,
            "ip": event.ip,
            "device": describe_device(event.user_agent),
            "method": event.detail.get("method"),
            "current": (event.event == audit.SESSION_STARTED
                        and event.detail.get("session_id") == sid),
        }
        for event in events
        if event.event in ACTIVITY_EVENTS
    ][:ACTIVITY_LIMIT]
    return jsonify(activity_list_schema.dump({"events": shown}))
