"""Every Redis key and script of address changes, in one place.

Keys (the `{u<id>}` hash tag keeps a user's keys in one cluster slot):

- `echg:{u<user id>}` - hash, the change waiting for its code or link: `e` the new
  address, `c` the code digest, `l` the link digest, `s` the session that asked
  (it stays signed in; the others end), `n` wrong tries. Expires with the code.
- `echg:{u<user id>}:undo:<digest>` - hash, one "this wasn't me" link sent to an
  old address: `o` the old address, `e` the new one, `t` when it changed. Named by
  the keyed digest of the link's secret; expires with the undo window.

Codes and secrets are kept only as keyed digests (see codes).
"""

from __future__ import annotations

from dataclasses import dataclass

from .redis_client import lua_script as _script
from .state import redis_client

START = """
-- KEYS: pending. ARGV: new address, code digest, link digest, session id, ttl
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'c', ARGV[2], 'l', ARGV[3], 's', ARGV[4], 'n', 0)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return 1
"""

CONFIRM = """
-- KEYS: pending. ARGV: 'c' (a code) or 'l' (a link), its digest, max wrong tries.
-- Single use: the change is taken (deleted) by the first right code or link.
local st = redis.call('HMGET', KEYS[1], 'e', ARGV[1], 'n', 's')
if not st[1] then return {'missing', '', ''} end
if st[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return {'ok', st[1], st[4] or ''}
end
if ARGV[1] == 'l' then return {'missing', '', ''} end
local tries = redis.call('HINCRBY', KEYS[1], 'n', 1)
if tries >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return {'locked', '', ''}
end
return {'wrong', tostring(tonumber(ARGV[3]) - tries), ''}
"""

TAKE_UNDO = """
-- KEYS: undo link. Single use: read and delete at once.
local st = redis.call('HMGET', KEYS[1], 'o', 'e', 't')
if not st[1] then return {'missing', '', '', ''} end
redis.call('DEL', KEYS[1])
return {'ok', st[1], st[2], st[3]}
"""

_START, _CONFIRM, _TAKE_UNDO = map(_script, (START, CONFIRM, TAKE_UNDO))


def pending_key(user_id: int) -> str:
    return f"echg:{{u{user_id}}}"


def undo_key(user_id: int, digest_hex: str) -> str:
    return f"echg:{{u{user_id}}}:undo:{digest_hex}"


def key_patterns(user_id: int) -> list[str]:
    """SCAN patterns that find every key of the user here (see account_data)."""
    return [pending_key(user_id), undo_key(user_id, "*")]


def start(
    user_id: int, *, new_email: str, code_digest: bytes, link_digest: bytes, session_id: str,
    ttl: int,
) -> None:
    _START(
        keys=[pending_key(user_id)],
        args=[new_email, code_digest, link_digest, session_id, ttl],
        client=redis_client(),
    )


@dataclass(frozen=True)
class Confirmation:
    status: str  # ok, wrong, locked, missing
    new_email: str = ""
    session_id: str = ""
    tries_left: int = 0


def confirm(user_id: int, *, by: str, digest: bytes, max_attempts: int) -> Confirmation:
    """`by`: 'c' for a code, 'l' for a link."""
    status, value, session_id = _CONFIRM(
        keys=[pending_key(user_id)], args=[by, digest, max_attempts], client=redis_client()
    )
    status, value = status.decode(), value.decode()
    if status == "ok":
        return Confirmation(status, new_email=value, session_id=session_id.decode())
    return Confirmation(status, tries_left=int(value) if status == "wrong" else 0)


def forget_pending(user_id: int) -> None:
    redis_client().delete(pending_key(user_id))


def save_undo(
    user_id: int, digest_hex: str, *, old_email: str, new_email: str, changed_at: int, ttl: int
) -> None:
    client = redis_client()
    key = undo_key(user_id, digest_hex)
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"o": old_email, "e": new_email, "t": changed_at})
        pipe.expire(key, ttl)
        pipe.execute()


@dataclass(frozen=True)
class Undo:
    old_email: str
    new_email: str
    changed_at: int


def take_undo(user_id: int, digest_hex: str) -> Undo | None:
    status, old, new, changed_at = _TAKE_UNDO(
        keys=[undo_key(user_id, digest_hex)], args=[], client=redis_client()
    )
    if status.decode() != "ok":
        return None
    return Undo(old.decode(), new.decode(), int(changed_at))


def forget_undos(user_id: int) -> int:
    """Drop every other undo link of the user (one undo settles them all)."""
    client = redis_client()
    keys = list(client.scan_iter(match=undo_key(user_id, "*"), count=1000))
    return int(client.delete(*keys)) if keys else 0
