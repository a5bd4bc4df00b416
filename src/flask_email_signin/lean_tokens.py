"""flask-jwt-extended's token encode and decode, without the repeated work, for HMAC keys.

Decoding: flask-jwt-extended reads every token four times (its claims and its header
unverified, then verified, then its header again), and PyJWT 2.15 checks each base64
segment of each read a character at a time in Python: 150 µs of a protected request,
most of what the extension costs there. `LeanDecoder` replaces the manager's decode with
one that verifies the signature once, with PyJWT's own HMAC algorithm and base64 helpers,
and the same claim rules. It accepts only what the library would accept: a token with
another header, an expired or malformed one, an app with a decode-key callback, a list of
audiences or issuers, goes to flask-jwt-extended's own decode, which answers as always.
`MemoizedHeaderReader` spares the fourth read for the headers recognised here.

Encoding: PyJWT prepares (and vets) the key again for every token, a third of the
65 µs a token costs. `LeanEncoder` builds the same claims in the same order as
flask-jwt-extended and signs them with the key prepared once; a header callback's
headers or a host's encode-key callback go through PyJWT's own `encode`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from calendar import timegm
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hmac import compare_digest
from typing import Any

import jwt
from flask import current_app
from flask_jwt_extended import JWTManager
from flask_jwt_extended import view_decorators as jwt_views
from flask_jwt_extended.config import config as jwt_config
from flask_jwt_extended.default_callbacks import (
    default_decode_key_callback,
    default_encode_key_callback,
)
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError
from jwt.utils import base64url_decode, base64url_encode

HMAC_HASHES = {
    "HS256": HMACAlgorithm.SHA256, "HS384": HMACAlgorithm.SHA384, "HS512": HMACAlgorithm.SHA512,
}
# The settings flask-jwt-extended decodes with; a change to any of them rebuilds the plan.
CONFIG_KEYS = (
    "JWT_ALGORITHM", "JWT_DECODE_ALGORITHMS", "JWT_SECRET_KEY", "SECRET_KEY",
    "JWT_DECODE_AUDIENCE", "JWT_DECODE_ISSUER", "JWT_DECODE_LEEWAY", "JWT_IDENTITY_CLAIM",
    "JWT_VERIFY_SUB",
)
BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")
PLAN_KEY = "email_signin_token_plan"


def _header_segment(algorithm: str) -> bytes:
    """The first segment of every token PyJWT signs with `algorithm` and no extra header."""
    token = jwt.encode({}, "k" * 64, algorithm=algorithm)
    return token.split(".", 1)[0].encode()


KNOWN_HEADERS: dict[bytes, tuple[str, dict[str, Any]]] = {}
for _name in HMAC_HASHES:
    _segment = _header_segment(_name)
    KNOWN_HEADERS[_segment] = (_name, json.loads(base64url_decode(_segment)))


@dataclass(frozen=True)
class Plan:
    """What one app's settings allow the lean path to verify (None: nothing)."""

    fingerprint: tuple[Any, ...] = field(repr=False)  # holds the secret keys
    algorithms: dict[bytes, HMACAlgorithm]  # header segment -> its algorithm
    signers: dict[str, tuple[bytes, HMACAlgorithm]]  # algorithm -> header segment, algorithm
    key: bytes = field(repr=False)
    leeway: float
    audience: str | None  # checked only when set, as flask-jwt-extended asks
    issuer: str | None
    identity_claim: str
    verify_sub: bool


def _fingerprint(config: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        tuple(value) if isinstance(value, list) else value
        for value in (config.get(name) for name in CONFIG_KEYS)
    )


def _plan_for(config: dict[str, Any], fingerprint: tuple[Any, ...]) -> Plan | None:
    audience, issuer = config.get("JWT_DECODE_AUDIENCE"), config.get("JWT_DECODE_ISSUER")
    # One audience and one issuer, or none: lists and containers are the library's.
    if not isinstance(audience, (str, type(None))) or not isinstance(issuer, (str, type(None))):
        return None
    algorithm = config.get("JWT_ALGORITHM")
    if algorithm not in HMAC_HASHES:
        return None
    secret = config.get("JWT_SECRET_KEY") or config.get("SECRET_KEY")
    if not secret:
        return None
    allowed = set(config.get("JWT_DECODE_ALGORITHMS") or ()) | {algorithm}
    leeway = config.get("JWT_DECODE_LEEWAY") or 0
    if isinstance(leeway, timedelta):
        leeway = leeway.total_seconds()
    try:
        key = HMACAlgorithm(HMAC_HASHES[algorithm]).prepare_key(secret)
    except (InvalidKeyError, TypeError):
        return None
    algorithms, signers = {}, {}
    for segment, (name, _header) in KNOWN_HEADERS.items():
        hmac = HMACAlgorithm(HMAC_HASHES[name])
        # A short key makes the library warn on every use: it keeps that path.
        if hmac.check_key_length(key) is not None:
            continue
        if name in allowed:
            algorithms[segment] = hmac
        if name == algorithm:
            signers[name] = (segment, hmac)
    if not algorithms:
        return None
    return Plan(fingerprint, algorithms, signers, key, float(leeway), audience, issuer,
                str(config.get("JWT_IDENTITY_CLAIM", "sub")),
                bool(config.get("JWT_VERIFY_SUB", True)))


def current_plan() -> Plan | None:
    """The current app's plan, rebuilt when one of its decode settings changed."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    fingerprint = _fingerprint(config)
    cached = app.extensions.get(PLAN_KEY)
    if cached is not None and cached[0] == fingerprint:
        plan: Plan | None = cached[1]
        return plan
    plan = _plan_for(config, fingerprint)
    app.extensions[PLAN_KEY] = (fingerprint, plan)
    return plan


def _segment_bytes(segment: bytes) -> bytes | None:
    """The bytes of a canonical unpadded base64url segment (PyJWT's rules), else None."""
    if len(segment) % 4 == 1 or not BASE64URL.fullmatch(segment):
        return None
    decoded = base64url_decode(segment)
    return decoded if base64url_encode(decoded) == segment else None


def _claims_hold(claims: dict[str, Any], plan: Plan) -> bool:
    """PyJWT's and flask-jwt-extended's checks, for claims of the types they are issued with."""
    now = time.time()
    for name in ("iat", "nbf"):
        if name in claims:
            value = claims[name]
            if type(value) is not int or value > now + plan.leeway:
                return False
    if "exp" in claims:
        value = claims["exp"]
        if type(value) is not int or value <= now - plan.leeway:
            return False
    if plan.audience is not None and claims.get("aud") != plan.audience:
        return False
    if plan.issuer is not None and claims.get("iss") != plan.issuer:
        return False
    if plan.verify_sub and "sub" in claims and not isinstance(claims["sub"], str):
        return False
    if "jti" in claims and not isinstance(claims["jti"], str):
        return False
    return plan.identity_claim in claims


def verified_claims(encoded: Any, csrf_value: str | None) -> dict[str, Any] | None:
    """The token's claims if it is valid and of the recognised shape; None to defer."""
    plan = current_plan()
    if plan is None or not isinstance(encoded, str):
        return None
    try:
        token = encoded.encode("ascii")
    except UnicodeEncodeError:
        return None
    parts = token.split(b".")
    if len(parts) != 3:
        return None
    header, body, crypto = parts
    algorithm = plan.algorithms.get(header)
    if algorithm is None:
        return None
    payload, signature = _segment_bytes(body), _segment_bytes(crypto)
    if payload is None or signature is None:
        return None
    if not algorithm.verify(header + b"." + body, plan.key, signature):
        return None
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if type(claims) is not dict or not _claims_hold(claims, plan):
        return None
    if csrf_value:
        csrf = claims.get("csrf")
        if not isinstance(csrf, str) or not compare_digest(csrf, csrf_value):
            return None
    claims.setdefault("type", "access")
    claims.setdefault("fresh", False)
    claims.setdefault("jti", None)
    return claims


class LeanEncoder:
    """The manager's `_encode_jwt_from_config`: flask-jwt-extended's claims, signed once."""

    def __init__(self, manager: JWTManager) -> None:
        self.manager = manager

    def __call__(
        self, identity: Any, token_type: str, claims: dict[str, Any] | None = None,
        fresh: Any = False, expires_delta: Any = None, headers: dict[str, Any] | None = None,
    ) -> str:
        manager = self.manager
        header_overrides = manager._jwt_additional_header_callback(identity)
        if headers is not None:
            header_overrides.update(headers)
        claim_overrides = manager._user_claims_callback(identity)
        if claims is not None:
            claim_overrides.update(claims)
        if expires_delta is None:
            access = token_type == "access"  # noqa: S105 - a token type, not a password
            expires_delta = jwt_config.access_expires if access else jwt_config.refresh_expires
        # flask_jwt_extended.tokens._encode_jwt's claims, in its order.
        now = datetime.now(UTC)
        if isinstance(fresh, timedelta):
            fresh = datetime.timestamp(now + fresh)
        payload: dict[str, Any] = {
            "fresh": fresh, "iat": now, "jti": str(uuid.uuid4()), "type": token_type,
            jwt_config.identity_claim_key: manager._user_identity_callback(identity),
        }
        if jwt_config.encode_nbf:
            payload["nbf"] = now
        if jwt_config.cookie_csrf_protect:
            payload["csrf"] = str(uuid.uuid4())
        if audience := jwt_config.encode_audience:
            payload["aud"] = audience
        if issuer := jwt_config.encode_issuer:
            payload["iss"] = issuer
        if expires_delta:
            payload["exp"] = now + expires_delta
        if claim_overrides:
            payload.update(claim_overrides)
        secret = manager._encode_key_callback(identity)
        algorithm, encoder = jwt_config.algorithm, jwt_config.json_encoder
        signer = None
        if not header_overrides and manager._encode_key_callback is default_encode_key_callback:
            plan = current_plan()
            signer = plan.signers.get(algorithm) if plan is not None else None
        if signer is None:
            return jwt.encode(payload, secret, algorithm, json_encoder=encoder,
                              headers=header_overrides)
        # PyJWT's encode, with the key prepared once.
        for name in ("exp", "iat", "nbf"):
            if isinstance(payload.get(name), datetime):
                payload[name] = timegm(payload[name].utctimetuple())
        if "iss" in payload and not isinstance(payload["iss"], str):
            raise TypeError("Issuer (iss) must be a string.")
        header, hmac = signer
        body = base64url_encode(json.dumps(payload, separators=(",", ":"), cls=encoder).encode())
        signing_input = header + b"." + body
        signature = base64url_encode(hmac.sign(signing_input, plan.key))  # type: ignore[union-attr]
        return (signing_input + b"." + signature).decode()


class LeanDecoder:
    """The manager's `_decode_jwt_from_config`: the lean path, else the library's own."""

    def __init__(self, manager: JWTManager, library_decode: Callable[..., dict[str, Any]]):
        self.manager = manager
        self.library_decode = library_decode

    def __call__(
        self, encoded_token: str, csrf_value: str | None = None, allow_expired: bool = False
    ) -> dict[str, Any]:
        if not allow_expired and self.manager._decode_key_callback is default_decode_key_callback:
            claims = verified_claims(encoded_token, csrf_value)
            if claims is not None:
                return claims
        return self.library_decode(encoded_token, csrf_value, allow_expired)


def install_lean_tokens(manager: JWTManager) -> None:
    """Give `manager` the lean encode and decode (idempotent), its views the header memo."""
    if not isinstance(manager._encode_jwt_from_config, LeanEncoder):
        manager._encode_jwt_from_config = LeanEncoder(manager)  # type: ignore[method-assign]
    if not isinstance(manager._decode_jwt_from_config, LeanDecoder):
        manager._decode_jwt_from_config = LeanDecoder(  # type: ignore[method-assign]
            manager, manager._decode_jwt_from_config
        )
    if not isinstance(jwt_views.get_unverified_jwt_headers, MemoizedHeaderReader):
        jwt_views.get_unverified_jwt_headers = MemoizedHeaderReader(
            jwt_views.get_unverified_jwt_headers
        )


class MemoizedHeaderReader:
    """flask-jwt-extended's unverified header read, answered from `KNOWN_HEADERS` when
    the token starts with one of them (the same dict PyJWT would parse), else read."""

    def __init__(self, read: Callable[[str], dict[str, Any]]) -> None:
        self.read = read

    def __call__(self, encoded_token: str) -> dict[str, Any]:
        if isinstance(encoded_token, str):
            segment, dot, _ = encoded_token.partition(".")
            known = KNOWN_HEADERS.get(segment.encode("ascii", "replace")) if dot else None
            if known is not None:
                return dict(known[1])
        return self.read(encoded_token)
