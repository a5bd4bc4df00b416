"""Every Redis key, TTL and script of pending sign-ins (codes and links), in one place.

Keys (the `{...}` hash tag keeps each user's keys in one cluster slot):

- `otp:{<email tag>}` - hash, the sign-in state of one email:
  `c` code digest, `x` code expiry (epoch s), `n` wrong tries on this code,
  `s` last issue time (resend cooldown), `w`/`k` hourly window start and codes
  sent in it, `f` consecutive failures across codes, `u` locked until,
  `l` sign-in link digest and `m` the email sealed under the link secret
  (see app.auth.codes). Code and link are one pending sign-in sharing `x`:
  using either deletes `x`, so both die; `l` stays until the next issue so a
  second click can be told "already used". Its TTL covers the longest-lived
  of those facts.
- `mail:{<email tag>}:<task id>` - marks a login email as sent (idempotency).

Each multi-step change is a Lua script, so it is atomic and one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.commands.core import Script

from .rate_limits import NO_WINDOWS, Windows
from .rate_limits import PER_IP_WINDOWS_LUA as _PER_IP
from .redis_client import KEEP_TTL_LUA as _KEEP
from .redis_client import lua_script as _script
from .state import redis_client

ISSUE_CODE = _KEEP + _PER_IP + """
-- ARGV: digest, ttl, cooldown, hourly_limit, link_digest, sealed_email ('' for none),
-- then the per-IP windows (KEYS[2..]; see rate_limits).
local limited = over_per_ip_limit(7)
if limited then return limited end
local now = tonumber(redis.call('TIME')[1])
local st = redis.call('HMGET', KEYS[1], 's', 'w', 'k')
local issued = tonumber(st[1] or '0')
local cooldown = tonumber(ARGV[3])
if issued + cooldown > now then return {'cooldown', issued + cooldown - now} end
local window, sent = tonumber(st[2] or '0'), tonumber(st[3] or '0')
if window + 3600 <= now then window, sent = now, 0 end
if sent >= tonumber(ARGV[4]) then return {'hourly_limit', window + 3600 - now} end
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'c', ARGV[1], 'x', now + ttl, 'n', 0, 's', now,
           'w', window, 'k', sent + 1)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'l', ARGV[5], 'm', ARGV[6])
else
  redis.call('HDEL', KEYS[1], 'l', 'm')
end
keep(KEYS[1], math.max(ttl, window + 3600 - now))
return {'ok', now + ttl}
"""

WITHDRAW_CODE = """
-- Undo an issue whose email could not be queued: the cooldown is not spent.
if redis.call('HGET', KEYS[1], 'c') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'c', 'x', 'n', 's', 'l', 'm')
  redis.call('HINCRBY', KEYS[1], 'k', -1)
  return 1
end
return 0
"""

CONSUME_CODE = _KEEP + _PER_IP + """
-- ARGV: digest, max_attempts, max_failures, lockout_seconds, then the per-IP windows
-- (KEYS[2..]; see rate_limits).
-- Check, count and consume in one step: two concurrent right answers
-- cannot both win, and a wrong answer always costs an attempt.
local limited = over_per_ip_limit(5)
if limited then return limited end
local now = tonumber(redis.call('TIME')[1])
local st = redis.call('HMGET', KEYS[1], 'c', 'x', 'n', 'f', 'u')
local locked_until = tonumber(st[5] or '0')
if locked_until > now then return {'locked', locked_until - now} end
if not st[1] or tonumber(st[2]) <= now then return {'expired', 0} end
local max_attempts = tonumber(ARGV[2])
local attempts = tonumber(st[3] or '0')
if attempts >= max_attempts then return {'exhausted', 0} end
if st[1] == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'c', 'x', 'n', 'f', 'u')
  return {'ok', 0}
end
attempts = attempts + 1
local failures = tonumber(st[4] or '0') + 1
local lockout = tonumber(ARGV[4])
if failures >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'n', attempts, 'f', 0, 'u', now + lockout)
  keep(KEYS[1], lockout)
  return {'locked', lockout}
end
redis.call('HSET', KEYS[1], 'n', attempts, 'f', failures)
keep(KEYS[1], lockout)
if attempts >= max_attempts then return {'exhausted', 0} end
return {'wrong', max_attempts - attempts}
"""

CONSUME_LINK = """
-- ARGV: link_digest
-- The link's secret has 256 bits, so it cannot be guessed: a wrong link
-- changes nothing (no attempt is counted, no lock is set), so strangers
-- cannot burn someone's code with bad links. For the same reason the code's
-- attempt counter and the lock do not stop a right link.
local now = tonumber(redis.call('TIME')[1])
local st = redis.call('HMGET', KEYS[1], 'l', 'x')
if not st[1] then return {'expired', 0} end
if st[1] ~= ARGV[1] then return {'invalid', 0} end
if not st[2] then return {'used', 0} end
if tonumber(st[2]) <= now then return {'expired', 0} end
redis.call('HDEL', KEYS[1], 'c', 'x', 'n', 'f', 'u')
return {'ok', 0}
"""

LINK_STATE = """
-- Read-only: is a link pending for this email (and for how long), used or expired?
local st = redis.call('HMGET', KEYS[1], 'l', 'x')
if not st[1] then return {'expired', 0} end
if not st[2] then return {'used', 0} end
local left = tonumber(st[2]) - tonumber(redis.call('TIME')[1])
if left <= 0 then return {'expired', 0} end
return {'pending', left}
"""

MAIL_STATE = """
-- KEYS: code, sent marker of this task. ARGV: code digest
-- Before a send: is the digest still the live, unexpired code, and has this
-- task not sent it already (a redelivered task)? One round trip for both.
local st = redis.call('HMGET', KEYS[1], 'c', 'x')
if st[1] ~= ARGV[1] or not st[2] or tonumber(st[2]) <= tonumber(redis.call('TIME')[1]) then
  return 'stale'
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'sent' end
return 'due'
"""


@dataclass(frozen=True)
class Outcome:
    """What a script decided, and a number of seconds or tries that goes with it
    (`window`: which per-IP window refused a 'rate_limited' request, from 1)."""

    status: str
    value: int
    window: int = 0


_ISSUE, _WITHDRAW, _CONSUME, _MAIL_STATE = map(
    _script, (ISSUE_CODE, WITHDRAW_CODE, CONSUME_CODE, MAIL_STATE)
)
_CONSUME_LINK, _LINK_STATE = map(_script, (CONSUME_LINK, LINK_STATE))


def _run(script: Script, keys: list[str], args: list[bytes | str | int]) -> Outcome:
    status, value, *window = script(keys=keys, args=args, client=redis_client())
    return Outcome(status.decode(), int(value), int(window[0]) if window else 0)


def code_key(tag: str) -> str:
    return f"otp:{{{tag}}}"


def mail_sent_key(tag: str, task_id: str) -> str:
    return f"mail:{{{tag}}}:{task_id}"


def issue_code(
    tag: str,
    digest: bytes,
    *,
    ttl: int,
    cooldown: int,
    hourly_limit: int,
    link_digest: bytes | None = None,
    sealed_email: bytes | None = None,
    windows: Windows = NO_WINDOWS,
) -> Outcome:
    """Replace the email's code (and link); refused inside the cooldown, over the hourly
    cap, or over a per-IP window (`windows`, counted first, in the same script)."""
    with_link = link_digest is not None and sealed_email is not None
    args: list[bytes | str | int] = [
        digest, ttl, cooldown, hourly_limit,
        link_digest if with_link else "", sealed_email if with_link else "",  # type: ignore[list-item]
        *windows.args,
    ]
    return _run(_ISSUE, [code_key(tag), *windows.keys], args)


def withdraw_code(tag: str, digest: bytes) -> None:
    _WITHDRAW(keys=[code_key(tag)], args=[digest], client=redis_client())


def consume_code(
    tag: str,
    digest: bytes,
    *,
    max_attempts: int,
    max_failures: int,
    lockout: int,
    windows: Windows = NO_WINDOWS,
) -> Outcome:
    """Atomically check a guess: ok, wrong, exhausted, expired, locked, or rate_limited
    (a per-IP window of `windows`, counted first, in the same script)."""
    return _run(
        _CONSUME,
        [code_key(tag), *windows.keys],
        [digest, max_attempts, max_failures, lockout, *windows.args],
    )


def consume_link(tag: str, digest: bytes) -> Outcome:
    """Atomically use the pending link: ok, invalid, used or expired; a miss changes nothing."""
    return _run(_CONSUME_LINK, [code_key(tag)], [digest])


def link_state(tag: str) -> Outcome:
    """Without consuming anything: pending (seconds left), used or expired."""
    return _run(_LINK_STATE, [code_key(tag)], [])


def sealed_email(tag: str) -> bytes | None:
    """The email sealed under the pending link's secret, if a link was issued."""
    value = redis_client().hget(code_key(tag), "m")
    return value if isinstance(value, bytes) else None


def login_mail_state(tag: str, digest: bytes, task_id: str) -> str:
    """'due' (send it), 'stale' (code replaced, used or expired) or 'sent' (by this task)."""
    state = _MAIL_STATE(
        keys=[code_key(tag), mail_sent_key(tag, task_id)], args=[digest], client=redis_client()
    )
    return state.decode() if isinstance(state, bytes) else str(state)


def mark_mail_sent(tag: str, task_id: str, ttl: int) -> None:
    redis_client().set(mail_sent_key(tag, task_id), 1, ex=max(ttl, 1))
