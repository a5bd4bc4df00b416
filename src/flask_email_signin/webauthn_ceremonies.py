"""WebAuthn challenges in Redis: single use, short-lived, bound to a session or a ceremony.

Keys:

- `webauthn:{u<user id>}:reg:<sid>` - the challenge of a passkey registration by that
  signed-in session (one at a time per session).
- `webauthn:cer:<ceremony id>` - hash of an authentication ceremony: `c` challenge,
  `p` purpose (`signin`, or `stepup` bound to `u` user id and `s` sid).

Each challenge is taken with one atomic read-and-delete, so an assertion or an
attestation can be verified once: a replay finds no challenge.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .redis_client import lua_script as _script
from .state import redis_client

CHALLENGE_BYTES = 32

TAKE_CEREMONY = """
local values = redis.call('HMGET', KEYS[1], 'c', 'p', 'u', 's')
redis.call('DEL', KEYS[1])
if not values[1] then return false end
return values
"""
_TAKE_CEREMONY = _script(TAKE_CEREMONY)


def new_challenge() -> bytes:
    return secrets.token_bytes(CHALLENGE_BYTES)


def _registration_key(user_id: int, sid: str) -> str:
    return f"webauthn:{{u{user_id}}}:reg:{sid}"


def _ceremony_key(ceremony: str) -> str:
    return f"webauthn:cer:{ceremony}"


def start_registration(user_id: int, sid: str, challenge: bytes, ttl: int) -> None:
    redis_client().set(_registration_key(user_id, sid), challenge, ex=ttl)


def take_registration(user_id: int, sid: str) -> bytes | None:
    value = redis_client().getdel(_registration_key(user_id, sid))
    return bytes(value) if value is not None else None


@dataclass(frozen=True)
class Ceremony:
    challenge: bytes
    purpose: str  # signin, stepup
    user_id: int | None = None
    sid: str | None = None


def start_ceremony(ceremony: Ceremony, ttl: int) -> str:
    """Store an authentication ceremony; its id goes to the client with the options."""
    ceremony_id = secrets.token_urlsafe(24)
    fields: dict[str, bytes | str | int] = {"c": ceremony.challenge, "p": ceremony.purpose}
    if ceremony.user_id is not None and ceremony.sid is not None:
        fields.update(u=ceremony.user_id, s=ceremony.sid)
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    pipe.hset(_ceremony_key(ceremony_id), mapping=fields)
    pipe.expire(_ceremony_key(ceremony_id), ttl)
    pipe.execute()
    return ceremony_id


def take_ceremony(ceremony_id: str) -> Ceremony | None:
    """The ceremony, deleted in the same step (None: unknown, expired or already used)."""
    values = _TAKE_CEREMONY(keys=[_ceremony_key(ceremony_id)], client=redis_client())
    if not values:
        return None
    challenge, purpose, user_id, sid = values
    return Ceremony(
        challenge=bytes(challenge),
        purpose=purpose.decode(),
        user_id=int(user_id) if user_id else None,
        sid=sid.decode() if sid else None,
    )
