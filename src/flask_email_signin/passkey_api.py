"""The passkey and step-up endpoints (registered with the API when OTP_PASSKEYS is on).

    POST   <prefix>/passkeys/register/options      signed in: options for create()
    POST   <prefix>/passkeys/register              signed in: store the new passkey
    POST   <prefix>/passkeys/authenticate/options  options for get() and a ceremony id
    POST   <prefix>/passkeys/authenticate          sign in with a passkey
    GET    <prefix>/passkeys                       signed in: the user's passkeys
    PATCH  <prefix>/passkeys/<id>                  signed in: rename one
    DELETE <prefix>/passkeys/<id>                  recent authentication: delete one
    POST   <prefix>/step-up/options                signed in: options to confirm by passkey
    POST   <prefix>/step-up/code                   signed in: email a code to confirm with
    POST   <prefix>/step-up                        signed in: confirm (passkey or code)
"""

from __future__ import annotations

from flask import Response, jsonify, request
from flask_jwt_extended import get_jwt, get_jwt_identity, jwt_required

from . import login_codes, passkeys, sessions
from .api import signed_in_response
from .blueprints import extension_blueprint
from .errors import SessionEnded
from .i18n import gettext, locale_name
from .json_body import load_json_body
from .rate_limits import enforce, per_ip_windows, rate_limited
from .schemas import (
    CeremonySchema,
    CodeSentSchema,
    PasskeyAuthenticateSchema,
    PasskeyAuthOptionsSchema,
    PasskeyListSchema,
    PasskeyRegisterSchema,
    PasskeyRenameSchema,
    PasskeySchema,
    StepUpSchema,
)
from .session_cookies import set_access_cookie
from .sign_in import complete_sign_in
from .state import API_BLUEPRINT, user_store
from .step_up import fresh_login_required

bp = extension_blueprint(f"{API_BLUEPRINT}_passkeys", __name__)

register_schema = PasskeyRegisterSchema()
auth_options_schema = PasskeyAuthOptionsSchema()
authenticate_schema = PasskeyAuthenticateSchema()
rename_schema = PasskeyRenameSchema()
step_up_schema = StepUpSchema()
passkey_schema = PasskeySchema()
passkey_list_schema = PasskeyListSchema()
ceremony_schema = CeremonySchema()
code_sent_schema = CodeSentSchema()


def _signed_in_user() -> tuple[int, str]:
    return int(get_jwt_identity()), str(get_jwt()["sid"])


def _profile(user_id: int):  # type: ignore[no-untyped-def]
    user = user_store().profile(user_id)
    if user is None:
        raise SessionEnded()
    return user


@bp.post("/passkeys/register/options")
@rate_limited("OTP_RATE_LIMIT_PASSKEY")
@jwt_required()
def register_options() -> Response:
    """Options for navigator.credentials.create(): a discoverable passkey for this user."""
    user_id, sid = _signed_in_user()
    return jsonify(passkeys.registration_options(_profile(user_id), sid))


@bp.post("/passkeys/register")
@rate_limited("OTP_RATE_LIMIT_PASSKEY")
@jwt_required()
def register() -> tuple[Response, int]:
    """Verify the new credential (py_webauthn) and store it; named after the device unless
    `name` is given."""
    body = load_json_body(register_schema)
    user_id, sid = _signed_in_user()
    passkey = passkeys.register(
        user_id, sid, body["credential"], name=body["name"],
        user_agent=request.user_agent.string,
    )
    return jsonify(passkey_schema.dump(passkey.to_public_dict())), 201


@bp.post("/passkeys/authenticate/options")
@rate_limited("OTP_RATE_LIMIT_PASSKEY")
def authenticate_options() -> Response:
    """Options for navigator.credentials.get(), for any of this site's passkeys (or those of
    `email`), and the ceremony id to send back."""
    body = load_json_body(auth_options_schema) if request.get_data(cache=True) else {}
    options = passkeys.authentication_options(email=body.get("email"))
    return jsonify(ceremony_schema.dump(options))


@bp.post("/passkeys/authenticate")
@rate_limited("OTP_RATE_LIMIT_PASSKEY")
def authenticate() -> Response:
    """Sign in with a passkey: the same session, tokens and cookies as a code."""
    body = load_json_body(authenticate_schema)
    proven = passkeys.authenticate(body["ceremony"], body["credential"])
    return signed_in_response(complete_sign_in(proven.email, method="passkey"))


@bp.get("/passkeys")
@jwt_required()
def list_passkeys() -> Response:
    """The signed-in user's passkeys."""
    user_id, _sid = _signed_in_user()
    listed = [p.to_public_dict() for p in passkeys.list_passkeys(user_id)]
    return jsonify(passkey_list_schema.dump({"passkeys": listed}))


@bp.patch("/passkeys/<int:passkey_id>")
@jwt_required()
def rename_passkey(passkey_id: int) -> Response:
    body = load_json_body(rename_schema)
    user_id, _sid = _signed_in_user()
    renamed = passkeys.rename_passkey(user_id, passkey_id, body["name"])
    return jsonify(passkey_schema.dump(renamed.to_public_dict()))


@bp.delete("/passkeys/<int:passkey_id>")
@fresh_login_required()
def delete_passkey(passkey_id: int) -> Response:
    """Delete a passkey; needs a recent authentication (step-up)."""
    user_id, _sid = _signed_in_user()
    passkeys.delete_passkey(user_id, passkey_id)
    return jsonify({"message": gettext("Passkey deleted.")})


@bp.post("/step-up/options")
@rate_limited("OTP_RATE_LIMIT_PASSKEY")
@jwt_required()
def step_up_options() -> Response:
    """Options to confirm by one of the user's passkeys, bound to this session."""
    user_id, sid = _signed_in_user()
    options = passkeys.authentication_options(step_up_user=user_id, sid=sid)
    return jsonify(ceremony_schema.dump(options))


@bp.post("/step-up/code")
@jwt_required()
def step_up_code() -> tuple[Response, int]:
    """Email the signed-in user a code to confirm with (the usual cooldown and caps)."""
    user_id, _sid = _signed_in_user()
    email = _profile(user_id).email
    sent = login_codes.request_login_code(
        email, per_ip_windows("OTP_RATE_LIMIT_REQUEST"), locale=locale_name()
    )
    payload = {
        "message": gettext("A code is on its way to your email."),
        "expires_in": sent.expires_in, "resend_in": sent.resend_in, "approval_number": None,
    }
    return jsonify(code_sent_schema.dump(payload)), 202


@bp.post("/step-up")
@jwt_required()
def step_up() -> Response:
    """Confirm it is you: a fresh access token (and cookie) recording the authentication."""
    body = load_json_body(step_up_schema)
    user_id, sid = _signed_in_user()
    user = _profile(user_id)
    if body["otp"] is not None:
        login_codes.verify_login_code(
            user.email, body["otp"], per_ip_windows("OTP_RATE_LIMIT_VERIFY")
        )
    else:
        enforce("OTP_RATE_LIMIT_PASSKEY")
        passkeys.authenticate(
            body["ceremony"], body["credential"], step_up_user=user_id, sid=sid
        )
    access = sessions.fresh_access_token(user, sid)
    response = jsonify({"access_token": access, "token_type": "bearer"})
    set_access_cookie(response, access)
    return response
