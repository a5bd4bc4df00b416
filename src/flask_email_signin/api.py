"""The JSON API blueprint: load with a schema, call a service, dump.

Mounted at OTP_URL_PREFIX (default `/auth`) by `EmailSignIn.init_app`.
"""

from __future__ import annotations

from typing import NoReturn

from flask import Response, current_app, jsonify, request
from flask_jwt_extended import (
    get_jwt,
    get_jwt_identity,
    jwt_required,
    unset_jwt_cookies,
)
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from . import login_codes, login_links, sessions
from .blueprints import extension_blueprint
from .browser_binding import set_binding_cookie
from .errors import SessionNotFound
from .i18n import available_locale, gettext, locale_name
from .json_body import load_json_body
from .metrics import VERIFICATIONS
from .openapi import build_openapi_document
from .rate_limits import per_ip_windows, rate_limited
from .schemas import (
    ApprovalPollSchema,
    ApprovalWaitingSchema,
    CodeSentSchema,
    LogoutAllSchema,
    ProfileSchema,
    ProfileUpdateSchema,
    RequestCodeSchema,
    SessionListSchema,
    SignedInSchema,
    UserSchema,
    VerifyCodeSchema,
)
from .session_cookies import set_session_cookies
from .settings import settings
from .sign_in import SignedIn, complete_sign_in
from .state import API_BLUEPRINT, user_store
from .step_up import fresh_login_required
from .users import public_profile

bp = extension_blueprint(API_BLUEPRINT, __name__)

# Built once: a schema's fields are bound at construction, which costs more than a load.
request_code_schema = RequestCodeSchema()
code_sent_schema = CodeSentSchema()
verify_code_schema = VerifyCodeSchema()
signed_in_schema = SignedInSchema()
user_schema = UserSchema()
profile_schema = ProfileSchema()
session_list_schema = SessionListSchema()
logout_all_schema = LogoutAllSchema()
approval_poll_schema = ApprovalPollSchema()
approval_waiting_schema = ApprovalWaitingSchema()
profile_update_schema = ProfileUpdateSchema()


@bp.post("/request-otp")
def request_otp() -> tuple[Response, int]:
    """Email a one-time sign-in code to the given address."""
    windows = per_ip_windows("OTP_RATE_LIMIT_REQUEST")
    body = load_json_body(request_code_schema)
    sent = login_codes.request_login_code(
        body["email"], windows, bind_browser=body["bind_browser"], locale=locale_name()
    )
    payload = {
        "message": gettext("If the address can sign in, a code is on its way."),
        "expires_in": sent.expires_in,
        "resend_in": sent.resend_in,
        "approval_number": sent.approval_number,
    }
    response = jsonify(code_sent_schema.dump(payload))
    if sent.binding:
        set_binding_cookie(response, sent.binding)
    return response, 202


@bp.post("/verify-otp")
def verify_otp() -> Response:
    """Exchange a valid code for a session: access and refresh cookies plus a bearer token."""
    windows = per_ip_windows(
        "OTP_RATE_LIMIT_VERIFY", on_refusal=VERIFICATIONS.labels("rate_limited").inc
    )
    body = load_json_body(verify_code_schema)
    login_codes.verify_login_code(body["email"], body["otp"], windows)
    return signed_in_response(complete_sign_in(body["email"]))


def signed_in_response(signed_in: SignedIn) -> Response:
    response = jsonify(
        signed_in_schema.dump(
            {
                "message": gettext("Signed in."),
                "access_token": signed_in.access_token,
                "token_type": "bearer",
                "user": user_schema.dump(signed_in.user),
            }
        )
    )
    signed_in.set_cookies(response)
    return response


@bp.post("/link-approval")
@rate_limited("OTP_RATE_LIMIT_APPROVAL_POLL")
def link_approval() -> Response | tuple[Response, int]:
    """The asking browser's poll: signed in once its link is approved on another device."""
    body = load_json_body(approval_poll_schema)
    email = body["email"]
    approval = login_links.collect_approval(email)
    if not approval.approved:
        waiting = {"status": "waiting", "expires_in": approval.seconds_left}
        return jsonify(approval_waiting_schema.dump(waiting)), 202
    return signed_in_response(complete_sign_in(email, method="approval"))


@bp.post("/refresh")
# Counted before the token check, so bad tokens use up the budget too.
@rate_limited("OTP_RATE_LIMIT_REFRESH")
@jwt_required(refresh=True, locations=["cookies"])
def refresh() -> Response:
    """New access token and a rotated refresh cookie; a reused refresh token ends the session."""
    access, refresh_token = sessions.refresh_session(get_jwt())
    response = jsonify({"access_token": access, "token_type": "bearer"})
    set_session_cookies(response, access, refresh_token)
    return response


@bp.post("/logout")
@jwt_required()
def logout() -> Response:
    """End this sign-in: its access and refresh tokens stop working everywhere."""
    sessions.end_session(get_jwt_identity(), get_jwt()["sid"], reason="logout")
    response = jsonify({"message": gettext("Signed out.")})
    unset_jwt_cookies(response)
    return response


@bp.get("/me")
@jwt_required()
def me() -> Response:
    """The signed-in user's profile."""
    user = user_store().profile(int(get_jwt_identity()))
    if user is None:
        raise NotFound(gettext("This account no longer exists."))
    return jsonify(profile_schema.dump(public_profile(user)))


@bp.patch("/me")
@jwt_required()
def update_me() -> Response:
    """Change the user's preferences: `locale` (null: follow the browser). Tokens carry
    the new language from the next refresh on."""
    body = load_json_body(profile_update_schema)
    user_id = int(get_jwt_identity())
    if not user_store().set_locale(user_id, available_locale(body["locale"])):
        raise NotFound(gettext("This account no longer exists."))
    user = user_store().profile(user_id)
    return jsonify(profile_schema.dump(public_profile(user)))


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3 description of this API, generated from its marshmallow schemas."""
    prefix = request.script_root + settings.url_prefix
    return jsonify(build_openapi_document(current_app.config, prefix))


@bp.get("/sessions")
@jwt_required()
def list_sessions() -> Response:
    """The signed-in user's live sessions, most recently used first; `current` marks this one."""
    live = sessions.list_sessions(get_jwt_identity(), current_sid=get_jwt()["sid"])
    return jsonify(session_list_schema.dump({"sessions": live}))


@bp.delete("/sessions/<sid>")
@jwt_required()
def revoke_session(sid: str) -> Response:
    """End one of the user's sessions; 404 for an id that is not theirs or not live."""
    if not sessions.end_session(get_jwt_identity(), sid, reason="session_revoked"):
        raise SessionNotFound()
    current = sid == get_jwt()["sid"]
    response = jsonify({"message": gettext("Session ended."), "current": current})
    if current:
        unset_jwt_cookies(response)
    return response


@bp.post("/logout-all")
@fresh_login_required()
def logout_all() -> Response:
    """End every session of the user; `{"keep_current": true}` spares this one. Needs a
    recent authentication (step-up)."""
    body = load_json_body(logout_all_schema) if request.get_data(cache=True) else {}
    keep_current = body.get("keep_current", False)
    current = get_jwt()["sid"]
    ended = sessions.end_all_sessions(
        get_jwt_identity(), reason="logout_all", keep=current if keep_current else None
    )
    response = jsonify({"message": gettext("Signed out."), "ended": ended})
    if not keep_current:
        unset_jwt_cookies(response)
    return response


ANY_METHOD = ("GET", "POST", "PUT", "PATCH", "DELETE")


@bp.route("/<path:_unknown>", methods=ANY_METHOD)
def unknown_route(_unknown: str) -> NoReturn:
    """Unknown paths under the prefix answer in the envelope (405 with Allow where due)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in ANY_METHOD:
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.add(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=sorted(allowed | {"OPTIONS"}))
    raise NotFound()
