"""One-time codes: drawn from `secrets`, kept only as keyed hashes.

The hash key is derived from SECRET_KEY, so a copy of Redis alone is not
enough to test guesses offline, and each digest is bound to the email and
to its purpose, so a digest for one address or use is worthless for another.
Sign-in links carry a 256-bit secret kept the same way; their URL names the
email only by its tag, and the email is stored sealed under the link secret.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from .settings import settings

CODE_PURPOSE = "login-code"
LINK_PURPOSE = "login-link"


def generate_code(length: int) -> str:
    """A uniformly random string of `length` decimal digits."""
    return f"{secrets.randbelow(10**length):0{length}d}"


def _derived_key(label: bytes) -> bytes:
    return _derive(settings.secret_key, label)


@functools.lru_cache(maxsize=64)
def _derive(secret_key: bytes, label: bytes) -> bytes:
    """Pure, so kept: four derivations per request-otp otherwise (keys stay in memory
    anyway, as SECRET_KEY does)."""
    return hmac.new(secret_key, b"passwordless:" + label, hashlib.sha256).digest()


def secret_digest(purpose: str, email: str, secret: str) -> bytes:
    """HMAC-SHA256 over purpose, email and secret; 128 bits are kept."""
    message = b"\x00".join((purpose.encode(), email.encode(), secret.encode()))
    return hmac.new(_derived_key(b"code-hash"), message, hashlib.sha256).digest()[:16]


LINK_SECRET_BYTES = 32
_SEAL_INFO = b"passwordless:sealed-email"


def generate_link_secret() -> str:
    """256 random bits, URL-safe: the secret of a one-click sign-in link."""
    return secrets.token_urlsafe(LINK_SECRET_BYTES)


def _seal_keystream(tag: str, secret: str, length: int) -> bytes:
    """HKDF-Expand (RFC 5869) keyed by SECRET_KEY and the link secret together.

    Each link secret is fresh and used once, so XOR with this keystream is a
    one-time pad from a PRF: without both keys the sealed email is noise.
    """
    prk = hmac.new(_derived_key(b"seal"), f"{tag}\x00{secret}".encode(), hashlib.sha256).digest()
    blocks, block = [], b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + _SEAL_INFO + bytes([counter]), hashlib.sha256).digest()
        blocks.append(block)
    return b"".join(blocks)[:length]


def seal_email(email: str, tag: str, secret: str) -> bytes:
    """The email, readable only with the link secret (Redis never holds it in clear)."""
    data = email.encode()
    return bytes(a ^ b for a, b in zip(data, _seal_keystream(tag, secret, len(data)), strict=True))


def unseal_email(sealed: bytes, tag: str, secret: str) -> str | None:
    """The sealed email, or None when `secret` is not the link's (garbage comes out).

    Only a screen: the store compares the keyed link digest before anything happens.
    """
    stream = _seal_keystream(tag, secret, len(sealed))
    try:
        email = bytes(a ^ b for a, b in zip(sealed, stream, strict=True)).decode()
    except UnicodeDecodeError:
        return None
    return email if hmac.compare_digest(email_tag(email), tag) else None


def email_tag(email: str) -> str:
    """A short keyed pseudonym for an email, so Redis keys never show addresses."""
    digest = hmac.new(_derived_key(b"email-tag"), email.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode()


BINDING_PURPOSE = "browser-binding"
APPROVAL_PURPOSE = "approval-number"


def generate_binding() -> str:
    """256 random bits: the value of a browser's binding cookie."""
    return secrets.token_urlsafe(LINK_SECRET_BYTES)


def binding_digest(tag: str, binding: str) -> bytes:
    """A binding cookie's keyed digest for one email's pending sign-in (by its tag, which
    is all the link page knows before the link's secret arrives)."""
    return secret_digest(BINDING_PURPOSE, tag, binding)


def generate_approval_number() -> str:
    """Two digits the asking browser shows and the approving device must type."""
    return f"{secrets.randbelow(100):02d}"
