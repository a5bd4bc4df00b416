"""Request and response bodies of the auth API (marshmallow).

Unknown fields are refused (marshmallow's RAISE), so a typo in a client is
reported instead of silently ignored.
"""

from __future__ import annotations

import re
from typing import Any

from email_validator import EmailNotValidError, validate_email
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .i18n import available_locale, localization
from .settings import settings

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
_DIGITS = re.compile(r"[0-9]+")


class NormalisedEmail(fields.String):
    """An email address, validated and normalised without DNS lookups.

    Normalisation (lower-cased domain, IDNA, Unicode NFC) makes one mailbox
    one account, and refuses anything that could inject mail headers.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        # Pasted addresses often carry spaces around them; the page trims them too.
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if len(text) > MAX_EMAIL_LENGTH:
            raise ValidationError(f"Must be at most {MAX_EMAIL_LENGTH} characters.")
        try:
            # allow_smtputf8=False: Flask-Mail cannot deliver to non-ASCII local parts
            # (IDN domains are fine: they are sent in their ASCII form).
            result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as error:
            raise ValidationError(f"Not a valid email address: {error}") from None
        return result.normalized.lower()


def validate_code_format(value: str) -> None:
    length = settings.code_length
    if len(value) != length or not _DIGITS.fullmatch(value):
        raise ValidationError(f"Must be exactly {length} digits.")


def validate_locale(value: str | None) -> None:
    if value is not None and available_locale(value) is None:
        raise ValidationError(
            f"Not an available locale; one of: {', '.join(localization().locales)}."
        )


class RequestCodeSchema(Schema):
    email = NormalisedEmail(required=True)
    bind_browser = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Bind the emailed link to this browser (a cookie is set): it signs "
            "in here with one click, and anywhere else it can only approve this browser's "
            "sign-in, after typing `approval_number`. For pages in a browser, not API clients."
        },
    )


class VerifyCodeSchema(Schema):
    email = NormalisedEmail(required=True)
    otp = fields.String(required=True, validate=validate_code_format)


class CodeSentSchema(Schema):
    message = fields.String()
    expires_in = fields.Integer()
    resend_in = fields.Integer()
    approval_number = fields.String(
        allow_none=True,
        metadata={"description": "With `bind_browser`: two digits to show, which a device "
                  "approving this sign-in from the link must type; otherwise null."},
    )


class ApprovalPollSchema(Schema):
    email = NormalisedEmail(required=True)


class ApprovalWaitingSchema(Schema):
    status = fields.String(metadata={"description": "`waiting`: not approved yet."})
    expires_in = fields.Integer(metadata={"description": "Seconds the sign-in may still be "
                                          "approved."})


class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()


class SignedInSchema(Schema):
    message = fields.String()
    access_token = fields.String()
    token_type = fields.String()
    user = fields.Nested(UserSchema)


class ProfileSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    created_at = fields.String(allow_none=True)
    last_login_at = fields.String(allow_none=True)
    roles = fields.List(fields.String())
    locale = fields.String(
        allow_none=True,
        metadata={"description": "The user's language for pages, emails and messages "
                  "(null: the browser's Accept-Language decides)."},
    )


class ProfileUpdateSchema(Schema):
    locale = fields.String(
        required=True,
        allow_none=True,
        validate=validate_locale,
        metadata={"description": "One of the locales the app has catalogues for, or null."},
    )


class SessionSchema(Schema):
    id = fields.String()
    created_at = fields.String()
    last_used_at = fields.String()
    ip = fields.String()
    user_agent = fields.String()
    method = fields.String(
        metadata={"description": "How the session began: code, link, approval or passkey."}
    )
    current = fields.Boolean()


class SessionListSchema(Schema):
    sessions = fields.List(fields.Nested(SessionSchema))


class LogoutAllSchema(Schema):
    keep_current = fields.Boolean(load_default=False)


class WebAuthnCredential(fields.Dict):
    """A PublicKeyCredential as its toJSON() gives it (py_webauthn checks the rest)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        credential = super()._deserialize(value, attr, data, **kwargs)
        if not isinstance(credential.get("id"), str) or not isinstance(
            credential.get("response"), dict
        ):
            raise ValidationError("Must be a PublicKeyCredential as its toJSON() gives it.")
        return credential


class PasskeyRegisterSchema(Schema):
    credential = WebAuthnCredential(required=True)
    name = fields.String(validate=validate.Length(max=64), load_default=None)


class PasskeyAuthOptionsSchema(Schema):
    email = NormalisedEmail(load_default=None)


class PasskeyAuthenticateSchema(Schema):
    ceremony = fields.String(required=True, validate=validate.Length(min=1, max=64))
    credential = WebAuthnCredential(required=True)


class PasskeyRenameSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))


class StepUpSchema(Schema):
    """Either the code from a fresh email (POST step-up/code), or a passkey assertion."""

    otp = fields.String(validate=validate_code_format, load_default=None)
    ceremony = fields.String(validate=validate.Length(min=1, max=64), load_default=None)
    credential = WebAuthnCredential(load_default=None)

    @validates_schema
    def _one_proof(self, data: dict[str, Any], **_kwargs: Any) -> None:
        by_code = data.get("otp") is not None
        by_passkey = data.get("ceremony") is not None and data.get("credential") is not None
        if by_code == by_passkey:
            raise ValidationError("Send either `otp`, or `ceremony` and `credential`.")


class PasskeySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    created_at = fields.String(allow_none=True)
    last_used_at = fields.String(allow_none=True)
    backed_up = fields.Boolean(metadata={"description": "Synced to the user's other devices."})
    transports = fields.List(fields.String())


class PasskeyListSchema(Schema):
    passkeys = fields.List(fields.Nested(PasskeySchema))


class CeremonySchema(Schema):
    ceremony = fields.String(metadata={"description": "Send it back with the credential."})
    options = fields.Dict(metadata={"description": "PublicKeyCredentialRequestOptions as JSON "
                                    "(for PublicKeyCredential.parseRequestOptionsFromJSON)."})


class EmailChangeSchema(Schema):
    email = NormalisedEmail(required=True, metadata={"description": "The new address."})


class EmailChangeCodeSchema(Schema):
    otp = fields.String(required=True, validate=validate_code_format)


class EmailChangeLinkSchema(Schema):
    """What an address-change page posts: the account in its path, the secret of its
    fragment."""

    user_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    secret = fields.String(required=True, validate=validate.Length(min=16, max=128))


class EmailChangeRequestedSchema(Schema):
    message = fields.String()
    expires_in = fields.Integer()


class EmailChangedSchema(Schema):
    message = fields.String()
    email = fields.String()


class ActivitySchema(Schema):
    at = fields.String()
    event = fields.String(metadata={"description": "An audit event name (README, Audit log)."})
    ip = fields.String()
    device = fields.String(metadata={"description": "The browser and system, from its user "
                                                    "agent."})
    method = fields.String(allow_none=True, metadata={
        "description": "For session.started: code, link, approval or passkey."})
    current = fields.Boolean(metadata={"description": "This event began this session."})


class ActivityListSchema(Schema):
    events = fields.List(fields.Nested(ActivitySchema))
