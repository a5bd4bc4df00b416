"""Every Redis key, TTL and script of sign-in sessions, in one place.

Keys (the `{u<id>}` hash tag keeps each user's keys in one cluster slot, so every
script below touches one slot, and every key it touches is declared):

- `sess:{u<user id>}:<sid>` - hash, one live sign-in (see sessions.py):
  `c` created, `l` last used (epoch s), `r` jti of the one refresh token
  that may still be used, `ip`, `ua` (user agent), `m` how it began (code, link,
  approval, passkey). It exists only while the
  session is live; its TTL ends the session at its refresh token's expiry.
- `sess:{u<user id>}` - set of the user's session ids (may hold ids whose
  hash already expired; readers prune them).
"""

from __future__ import annotations

from dataclasses import dataclass

from .redis_client import KEEP_TTL_LUA as _KEEP
from .redis_client import lua_script as _script
from .state import redis_client

# Last use is stamped at most this often: a busy session costs one write a
# minute, not one per request.
SESSION_TOUCH_INTERVAL_SECONDS = 60

CREATE_SESSION = _KEEP + """
-- KEYS: session, index. ARGV: sid, ttl, refresh jti, ip, user agent, method
local now = tonumber(redis.call('TIME')[1])
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'c', now, 'l', now, 'r', ARGV[3], 'ip', ARGV[4], 'ua', ARGV[5],
           'm', ARGV[6])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[2], ARGV[1])
keep(KEYS[2], ttl)
return now
"""

TOUCH_SESSION = """
-- The check run on every protected request: 1 if the session is live.
-- ARGV: seconds between two last-use stamps
local last = redis.call('HGET', KEYS[1], 'l')
if not last then return 0 end
local now = tonumber(redis.call('TIME')[1])
if now - tonumber(last) >= tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'l', now) end
return 1
"""

ROTATE_REFRESH = """
-- KEYS: session, index. ARGV: sid, presented refresh jti, new refresh jti
-- Compare-and-swap of the one usable refresh token. A retired one coming
-- back means two parties hold the session's tokens: end the session.
local current = redis.call('HGET', KEYS[1], 'r')
if not current then return 'missing' end
-- The new jti is random and fresh: finding it means this very call already rotated
-- (the client retried after losing the reply), not that the old token came back.
if current == ARGV[3] then return 'ok' end
if current ~= ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 'reused'
end
redis.call('HSET', KEYS[1], 'r', ARGV[3], 'l', tonumber(redis.call('TIME')[1]))
return 'ok'
"""

REVOKE_SESSIONS = """
-- KEYS: index, then one session key per ARGV sid. Returns how many were live.
local ended = 0
for i, sid in ipairs(ARGV) do
  ended = ended + redis.call('DEL', KEYS[i + 1])
  redis.call('SREM', KEYS[1], sid)
end
return ended
"""

_CREATE_SESSION, _TOUCH_SESSION, _ROTATE_REFRESH, _REVOKE_SESSIONS = map(
    _script, (CREATE_SESSION, TOUCH_SESSION, ROTATE_REFRESH, REVOKE_SESSIONS)
)


def session_key(user_id: str, sid: str) -> str:
    return f"sess:{{u{user_id}}}:{sid}"


def session_index_key(user_id: str) -> str:
    return f"sess:{{u{user_id}}}"


@dataclass(frozen=True)
class SessionRecord:
    """One live sign-in as stored: times are epoch seconds."""

    sid: str
    created: int
    last_used: int
    ip: str
    user_agent: str
    method: str


def create_session(
    user_id: str, sid: str, *, refresh_jti: str, ip: str, user_agent: str, ttl: int,
    method: str = "code",
) -> None:
    _CREATE_SESSION(
        keys=[session_key(user_id, sid), session_index_key(user_id)],
        args=[sid, ttl, refresh_jti, ip, user_agent, method],
        client=redis_client(),
    )


def touch_session(user_id: str, sid: str) -> bool:
    """Live or not, in one round trip; stamps last use (see TOUCH_SESSION)."""
    live = _TOUCH_SESSION(
        keys=[session_key(user_id, sid)],
        args=[SESSION_TOUCH_INTERVAL_SECONDS],
        client=redis_client(),
    )
    return bool(live)


def rotate_refresh_token(user_id: str, sid: str, *, presented: str, new: str) -> str:
    """Swap the usable refresh jti: 'ok', 'reused' (session ended) or 'missing'."""
    status = _ROTATE_REFRESH(
        keys=[session_key(user_id, sid), session_index_key(user_id)],
        args=[sid, presented, new],
        client=redis_client(),
    )
    return status.decode() if isinstance(status, bytes) else str(status)


def revoke_sessions(user_id: str, sids: list[str]) -> int:
    """End the given sessions; returns how many of them were live."""
    if not sids:
        return 0
    keys = [session_index_key(user_id), *(session_key(user_id, sid) for sid in sids)]
    ended = _REVOKE_SESSIONS(keys=keys, args=sids, client=redis_client())
    return int(ended)


def session_ids(user_id: str) -> list[str]:
    members = redis_client().smembers(session_index_key(user_id))
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def list_sessions(user_id: str) -> list[SessionRecord]:
    """The user's live sessions, newest use first; ids of expired ones are pruned."""
    sids = session_ids(user_id)
    if not sids:
        return []
    client = redis_client()
    with client.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.hgetall(session_key(user_id, sid))
        rows = pipe.execute()
    records, dead = [], []
    for sid, row in zip(sids, rows, strict=True):
        if not row:
            dead.append(sid)
            continue
        field = {k.decode(): v.decode() for k, v in row.items()}
        records.append(
            SessionRecord(
                sid=sid,
                created=int(field.get("c", 0)),
                last_used=int(field.get("l", 0)),
                ip=field.get("ip", ""),
                user_agent=field.get("ua", ""),
                method=field.get("m", "code"),
            )
        )
    if dead:
        client.srem(session_index_key(user_id), *dead)
    return sorted(records, key=lambda r: (r.last_used, r.created), reverse=True)
