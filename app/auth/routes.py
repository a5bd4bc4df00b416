"""HTTP endpoints of the auth blueprint: load with a schema, call a service, dump."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request
from flask_jwt_extended import (
    get_jwt,
    get_jwt_identity,
    jwt_required,
    set_access_cookies,
    set_refresh_cookies,
    unset_jwt_cookies,
)

from ..extensions import db, limiter
from ..json_body import load_json_body
from ..models import User
from . import bp, services, tokens
from .errors import SessionNotFound
from .openapi import build_openapi_document
from .schemas import (
    CodeSentSchema,
    LogoutAllSchema,
    ProfileSchema,
    RequestCodeSchema,
    SessionListSchema,
    SignedInSchema,
    UserSchema,
    VerifyCodeSchema,
)

# Built once: a schema's fields are bound at construction, which costs more than a load.
request_code_schema = RequestCodeSchema()
code_sent_schema = CodeSentSchema()
verify_code_schema = VerifyCodeSchema()
signed_in_schema = SignedInSchema()
user_schema = UserSchema()
profile_schema = ProfileSchema()
session_list_schema = SessionListSchema()
logout_all_schema = LogoutAllSchema()


@bp.post("/request-otp")
@limiter.limit_from_config("OTP_RATE_LIMIT_REQUEST")
def request_otp() -> tuple[Response, int]:
    """Email a one-time sign-in code to the given address."""
    body = load_json_body(request_code_schema)
    sent = services.request_login_code(body["email"])
    payload = {
        "message": "If the address can sign in, a code is on its way.",
        "expires_in": sent.expires_in,
        "resend_in": sent.resend_in,
    }
    return jsonify(code_sent_schema.dump(payload)), 202


@bp.post("/verify-otp")
@limiter.limit_from_config("OTP_RATE_LIMIT_VERIFY")
def verify_otp() -> Response:
    """Exchange a valid code for a session: access and refresh cookies plus a bearer token."""
    body = load_json_body(verify_code_schema)
    user = services.verify_login_code(body["email"], body["otp"])
    access, refresh = tokens.start_session(
        user, ip=request.remote_addr, user_agent=request.user_agent.string
    )
    response = jsonify(
        signed_in_schema.dump(
            {
                "message": "Signed in.",
                "access_token": access,
                "token_type": "bearer",
                "user": user_schema.dump(user),
            }
        )
    )
    set_access_cookies(response, access)
    set_refresh_cookies(response, refresh)
    return response


@bp.post("/refresh")
# Counted before the token check, so bad tokens use up the budget too.
@limiter.limit_from_config("OTP_RATE_LIMIT_REFRESH")
@jwt_required(refresh=True, locations=["cookies"])
def refresh() -> Response:
    """New access token and a rotated refresh cookie; a reused refresh token ends the session."""
    access, refresh_token = tokens.refresh_session(get_jwt())
    response = jsonify({"access_token": access, "token_type": "bearer"})
    set_access_cookies(response, access)
    set_refresh_cookies(response, refresh_token)
    return response


@bp.post("/logout")
@jwt_required()
def logout() -> Response:
    """End this sign-in: its access and refresh tokens stop working everywhere."""
    tokens.end_session(get_jwt_identity(), get_jwt()["sid"], reason="logout")
    response = jsonify({"message": "Signed out."})
    unset_jwt_cookies(response)
    return response


@bp.get("/me")
@jwt_required()
def me() -> Response:
    """The signed-in user's profile."""
    user = db.get_or_404(User, int(get_jwt_identity()))
    return jsonify(profile_schema.dump(user.to_public_dict()))


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3 description of this API, generated from its marshmallow schemas."""
    return jsonify(build_openapi_document(current_app.config))


@bp.get("/sessions")
@jwt_required()
def list_sessions() -> Response:
    """The signed-in user's live sessions, most recently used first; `current` marks this one."""
    sessions = tokens.list_sessions(get_jwt_identity(), current_sid=get_jwt()["sid"])
    return jsonify(session_list_schema.dump({"sessions": sessions}))


@bp.delete("/sessions/<sid>")
@jwt_required()
def revoke_session(sid: str) -> Response:
    """End one of the user's sessions; 404 for an id that is not theirs or not live."""
    if not tokens.end_session(get_jwt_identity(), sid, reason="session_revoked"):
        raise SessionNotFound()
    current = sid == get_jwt()["sid"]
    response = jsonify({"message": "Session ended.", "current": current})
    if current:
        unset_jwt_cookies(response)
    return response


@bp.post("/logout-all")
@jwt_required()
def logout_all() -> Response:
    """End every session of the user; `{"keep_current": true}` spares this one."""
    body = load_json_body(logout_all_schema) if request.get_data(cache=True) else {}
    keep_current = body.get("keep_current", False)
    current = get_jwt()["sid"]
    ended = tokens.end_all_sessions(
        get_jwt_identity(), reason="logout_all", keep=current if keep_current else None
    )
    response = jsonify({"message": "Signed out.", "ended": ended})
    if not keep_current:
        unset_jwt_cookies(response)
    return response
