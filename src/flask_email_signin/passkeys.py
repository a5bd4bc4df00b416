"""Passkeys: register one after an email sign-in, sign in (or step up) with it, manage it.

py_webauthn makes the options and verifies every response (no CBOR or attestation
parsing here). The relying party comes from configuration, never from the `Host`
header (see settings.webauthn_*). Registration asks for a discoverable credential,
so signing in needs no email typed; no attestation is requested (nothing here
depends on the authenticator's make).

Sign count: a response whose counter does not exceed the stored one (when either
is non-zero) is refused by the library as a possible cloned authenticator, and
counted as a failed sign-in; synced passkeys report 0 and are not affected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import options_to_json_dict
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from . import audit, code_store, signals, webauthn_ceremonies
from .codes import email_tag
from .errors import (
    PasskeyAlreadyRegistered,
    PasskeyCeremonyExpired,
    PasskeyInvalid,
    PasskeyNotFound,
    PasskeyUnknown,
    VerificationLocked,
)
from .i18n import gettext
from .metrics import VERIFICATIONS
from .passkey_store import Passkey, PasskeyStore
from .settings import settings
from .signals import emit
from .state import current_state, user_store
from .user_agents import describe_device


def passkey_store() -> PasskeyStore:
    store = current_state().passkeys
    if store is None:
        raise RuntimeError("Passkeys are off (OTP_PASSKEYS).")
    return store


def _derived(label: bytes, data: bytes) -> bytes:
    key = hmac.new(settings.secret_key, b"passwordless:" + label, hashlib.sha256).digest()
    return hmac.new(key, data, hashlib.sha256).digest()


def user_handle(user_id: int) -> bytes:
    """The WebAuthn user handle: a keyed pseudonym of the user id, never the email."""
    return _derived(b"webauthn-user-handle", str(user_id).encode())[:32]


def _descriptors(passkeys: list[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=p.credential_id,
            transports=[AuthenticatorTransport(t) for t in p.transports if t in known] or None,
        )
        for p in passkeys
    ]


def registration_options(user: Any, sid: str) -> dict[str, Any]:
    """Options for navigator.credentials.create(); the challenge is kept for this session."""
    challenge = webauthn_ceremonies.new_challenge()
    options = generate_registration_options(
        rp_id=settings.webauthn_rp_id,
        rp_name=settings.webauthn_rp_name,
        user_id=user_handle(user.id),
        user_name=user.email,
        user_display_name=user.email,
        challenge=challenge,
        timeout=settings.webauthn_timeout * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(passkey_store().of_user(user.id)),
    )
    webauthn_ceremonies.start_registration(user.id, sid, challenge, settings.webauthn_timeout)
    return options_to_json_dict(options)


def register(
    user_id: int, sid: str, credential: dict[str, Any], *, name: str | None, user_agent: str
) -> Passkey:
    """Verify an attestation against this session's challenge and store the passkey."""
    challenge = webauthn_ceremonies.take_registration(user_id, sid)
    if challenge is None:
        raise PasskeyCeremonyExpired()
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=settings.webauthn_origins,
        )
    except WebAuthnException:
        raise PasskeyInvalid() from None
    except (KeyError, TypeError, ValueError):  # a shape the library did not expect
        raise PasskeyInvalid() from None
    transports = credential.get("response", {}).get("transports") or []
    passkey = passkey_store().add(
        user_id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[str(t) for t in transports if isinstance(t, str)][:8],
        backup_eligible=verified.credential_device_type.value == "multi_device",
        backed_up=verified.credential_backed_up,
        aaguid=verified.aaguid,
        name=(name or "").strip() or gettext("Passkey on %(device)s",
                                             device=describe_device(user_agent)),
    )
    if passkey is None:
        raise PasskeyAlreadyRegistered()
    emit(signals.passkey_registered, user_id=user_id, passkey_id=passkey.id)
    audit.record(audit.PASSKEY_REGISTERED, user_id=user_id, detail={"passkey_id": passkey.id})
    return passkey


@dataclass(frozen=True)
class Options:
    ceremony: str
    options: dict[str, Any]


def authentication_options(
    *, email: str | None = None, step_up_user: int | None = None, sid: str | None = None
) -> Options:
    """Options for navigator.credentials.get() and the ceremony id to send back.

    Without an email: any discoverable passkey of this site (nothing to type). With
    one: its passkeys are allowed, and an address without passkeys gets a stable
    made-up credential, so the answer does not tell who has an account or a passkey.
    For a step-up, the signed-in user's passkeys, bound to the session.
    """
    allowed: list[PublicKeyCredentialDescriptor] = []
    if step_up_user is not None:
        allowed = _descriptors(passkey_store().of_user(step_up_user))
    elif email:
        user = user_store().find(email)
        passkeys = passkey_store().of_user(user.id) if user is not None else []
        allowed = _descriptors(passkeys) or [
            PublicKeyCredentialDescriptor(id=_derived(b"webauthn-decoy", email.encode()))
        ]
    challenge = webauthn_ceremonies.new_challenge()
    options = generate_authentication_options(
        rp_id=settings.webauthn_rp_id,
        challenge=challenge,
        timeout=settings.webauthn_timeout * 1000,
        allow_credentials=allowed or None,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    ceremony = webauthn_ceremonies.Ceremony(
        challenge=challenge,
        purpose="stepup" if step_up_user is not None else "signin",
        user_id=step_up_user,
        sid=sid,
    )
    return Options(
        ceremony=webauthn_ceremonies.start_ceremony(ceremony, settings.webauthn_timeout),
        options=options_to_json_dict(options),
    )


def _credential_id(credential: dict[str, Any]) -> bytes:
    raw = credential.get("rawId") or credential.get("id")
    if not isinstance(raw, str) or len(raw) > 1400:
        raise PasskeyInvalid()
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError:
        raise PasskeyInvalid() from None


@dataclass(frozen=True)
class Authenticated:
    user_id: int
    email: str


def authenticate(
    ceremony_id: str, credential: dict[str, Any], *, step_up_user: int | None = None,
    sid: str | None = None,
) -> Authenticated:
    """Verify an assertion against its ceremony's challenge (taken once: a replay fails).

    Subject to the email's lock like a code: a locked email is refused, and an
    assertion that does not verify counts as a failure towards the lock.
    """
    ceremony = webauthn_ceremonies.take_ceremony(ceremony_id)
    expected_purpose = "stepup" if step_up_user is not None else "signin"
    if ceremony is None or ceremony.purpose != expected_purpose:
        raise PasskeyCeremonyExpired()
    if step_up_user is not None and (ceremony.user_id, ceremony.sid) != (step_up_user, sid):
        raise PasskeyCeremonyExpired()
    passkey = passkey_store().by_credential_id(_credential_id(credential))
    if passkey is None or (step_up_user is not None and passkey.user_id != step_up_user):
        VERIFICATIONS.labels("passkey_unknown").inc()
        raise PasskeyUnknown()
    user = user_store().profile(passkey.user_id)
    if user is None:
        raise PasskeyUnknown()
    tag = email_tag(user.email)
    locked = code_store.locked_for(tag)
    if locked:
        VERIFICATIONS.labels("locked").inc()
        raise VerificationLocked(headers={"Retry-After": str(locked)})
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=ceremony.challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=settings.webauthn_origins,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
        )
    except (WebAuthnException, KeyError, TypeError, ValueError):
        VERIFICATIONS.labels("passkey_invalid").inc()
        lockout = code_store.count_failure(
            tag, max_failures=settings.max_failures, lockout=settings.lockout_seconds
        )
        if lockout:
            raise VerificationLocked(headers={"Retry-After": str(lockout)}) from None
        raise PasskeyInvalid() from None
    passkey_store().record_use(
        passkey.id, sign_count=verified.new_sign_count, backed_up=verified.credential_backed_up
    )
    code_store.locked_for(tag, clear_failures=True)
    VERIFICATIONS.labels("passkey").inc()
    return Authenticated(user_id=passkey.user_id, email=user.email)


def list_passkeys(user_id: int) -> list[Passkey]:
    return passkey_store().of_user(user_id)


# Passkey ids are an INTEGER column (32-bit on PostgreSQL): a larger id in a URL names no
# passkey, and must not reach the database, which refuses it (an error, not an answer).
LARGEST_PASSKEY_ID = 2**31 - 1


def existing_passkey_id(passkey_id: int) -> int:
    """The id as given, when a passkey could have it; PasskeyNotFound otherwise."""
    if not 0 < passkey_id <= LARGEST_PASSKEY_ID:
        raise PasskeyNotFound()
    return passkey_id


def rename_passkey(user_id: int, passkey_id: int, name: str) -> Passkey:
    passkey_id = existing_passkey_id(passkey_id)
    passkey = passkey_store().rename(user_id, passkey_id, name.strip())
    if passkey is None:
        raise PasskeyNotFound()
    return passkey


def delete_passkey(user_id: int, passkey_id: int) -> None:
    passkey_id = existing_passkey_id(passkey_id)
    if not passkey_store().delete(user_id, passkey_id):
        raise PasskeyNotFound()
    emit(signals.passkey_deleted, user_id=user_id, passkey_id=passkey_id)
    audit.record(audit.PASSKEY_DELETED, user_id=user_id, detail={"passkey_id": passkey_id})
