"""Every Redis key, TTL and script of pending sign-ins (codes and links), in one place.

Keys (the `{...}` hash tag keeps each user's keys in one cluster slot):

- `otp:{<email tag>}` - hash, the sign-in state of one email:
  `c` code digest, `x` code expiry (epoch s), `n` wrong tries on this code,
  `s` last issue time (resend cooldown), `w`/`k` hourly window start and codes
  sent in it, `f` consecutive failures across codes, `u` locked until,
  `l` sign-in link digest and `m` the email sealed under the link secret
  (see codes). Code and link are one pending sign-in sharing `x`:
  using either deletes `x`, so both die; `l` stays until the next issue so a
  second click can be told "already used". Its TTL covers the longest-lived
  of those facts.
  Telling a wrong code from an old one: `o` the digests of up to four codes this
  one replaced (newest first), `q` the digest of the code last used.
  Browser binding (see login_links): `b` the digest of the asking browser's
  binding cookie, `y` the digest of the number it shows for approval elsewhere,
  `a`/`i` its user agent and IP (shown on the approval page), `p` the decision
  taken on another device ('a' approved, 'd' denied). `z` the nonce of the call that used
  the code or link (so a retry of that call after a lost reply gets its answer again).
- `mail:{<email tag>}:<task id>` - marks a login email as sent (idempotency).

Each multi-step change is a Lua script, so it is atomic and one round trip.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from redis.commands.core import Script

from .rate_limits import NO_WINDOWS, Windows
from .rate_limits import PER_IP_WINDOWS_LUA as _PER_IP
from .redis_client import KEEP_TTL_LUA as _KEEP
from .redis_client import lua_script as _script
from .state import redis_client

ISSUE_CODE = _KEEP + _PER_IP + """
-- ARGV: digest, ttl, cooldown, hourly_limit, link_digest, sealed_email ('' for none),
-- binding digest, approval number digest, user agent, ip ('' for an unbound request),
-- then the per-IP windows (KEYS[2..]; see rate_limits).
-- Retried by the client after a lost reply (see redis_client): the digest of a fresh
-- random code already in place is this very call's, so it answers as it did.
local mine = redis.call('HMGET', KEYS[1], 'c', 'x')
if mine[1] == ARGV[1] and mine[2] then return {'ok', tonumber(mine[2])} end
local limited = over_per_ip_limit(11)
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
-- The code being replaced (or the one last used) joins the older codes.
local old = redis.call('HMGET', KEYS[1], 'c', 'q', 'o')
local replaced = old[1] or old[2]
if replaced then
  redis.call('HSET', KEYS[1], 'o', string.sub(replaced .. (old[3] or ''), 1, 64))
end
redis.call('HDEL', KEYS[1], 'q', 'p', 'z')
redis.call('HSET', KEYS[1], 'c', ARGV[1], 'x', now + ttl, 'n', 0, 's', now,
           'w', window, 'k', sent + 1)
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'b', ARGV[7], 'y', ARGV[8], 'a', ARGV[9], 'i', ARGV[10])
else
  redis.call('HDEL', KEYS[1], 'b', 'y', 'a', 'i')
end
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
  redis.call('HDEL', KEYS[1], 'c', 'x', 'n', 's', 'l', 'm', 'b', 'y', 'a', 'i')
  redis.call('HINCRBY', KEYS[1], 'k', -1)
  return 1
end
return 0
"""

CONSUME_CODE = _KEEP + _PER_IP + """
-- ARGV: digest, max_attempts, max_failures, lockout_seconds, this call's nonce, then the
-- per-IP windows (KEYS[2..]; see rate_limits).
-- Check, count and consume in one step: two concurrent right answers
-- cannot both win, and a wrong answer always costs an attempt.
-- A retry of the call that used the code (its reply was lost) is told 'ok' again: `z`
-- keeps that call's random nonce. Nobody else knows it, so it opens nothing.
if redis.call('HGET', KEYS[1], 'z') == ARGV[5] then return {'ok', 0} end
local limited = over_per_ip_limit(6)
if limited then return limited end
local now = tonumber(redis.call('TIME')[1])
local st = redis.call('HMGET', KEYS[1], 'c', 'x', 'n', 'f', 'u', 'q', 'o')
local locked_until = tonumber(st[5] or '0')
if locked_until > now then return {'locked', locked_until - now} end
if not st[1] or not st[2] then
  if st[6] == ARGV[1] then return {'used', 0} end
  return {'expired', 0}
end
if tonumber(st[2]) <= now then return {'expired', 0} end
local max_attempts = tonumber(ARGV[2])
local attempts = tonumber(st[3] or '0')
if attempts >= max_attempts then return {'exhausted', 0} end
if st[1] == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'c', 'x', 'n', 'f', 'u', 'o', 'p')
  redis.call('HSET', KEYS[1], 'q', ARGV[1], 'z', ARGV[5])
  return {'ok', 0}
end
-- An older code of this email: said so, but it costs a try like any wrong guess.
local superseded = false
local older = st[7] or ''
for at = 1, #older, 16 do
  if string.sub(older, at, at + 15) == ARGV[1] then superseded = true end
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
if superseded then return {'superseded', max_attempts - attempts} end
return {'wrong', max_attempts - attempts}
"""

# What using a code or link leaves: the pending sign-in is over (code, expiry,
# counters, decision), the used code's digest stays to tell "already used".
_END_PENDING = """
local function end_pending(used_digest)
  redis.call('HDEL', KEYS[1], 'c', 'x', 'n', 'f', 'u', 'o', 'p')
  if used_digest then redis.call('HSET', KEYS[1], 'q', used_digest) end
end
"""

CONSUME_LINK = _END_PENDING + """
-- ARGV: link_digest, binding digest of this browser ('' for none), this call's nonce
-- (a retried call whose reply was lost is told 'ok' again, as in CONSUME_CODE)
-- The link's secret has 256 bits, so it cannot be guessed: a wrong link
-- changes nothing (no attempt is counted, no lock is set), so strangers
-- cannot burn someone's code with bad links. For the same reason the code's
-- attempt counter and the lock do not stop a right link. A link bound to the
-- browser that asked works in that browser only ('unbound' elsewhere).
if redis.call('HGET', KEYS[1], 'z') == ARGV[3] then return {'ok', 0} end
local now = tonumber(redis.call('TIME')[1])
local st = redis.call('HMGET', KEYS[1], 'l', 'x', 'b', 'c', 'p')
if not st[1] then return {'expired', 0} end
if st[1] ~= ARGV[1] then return {'invalid', 0} end
if st[5] == 'd' then return {'denied', 0} end
if not st[2] then return {'used', 0} end
if tonumber(st[2]) <= now then return {'expired', 0} end
if st[3] and st[3] ~= ARGV[2] then return {'unbound', 0} end
end_pending(st[4])
redis.call('HSET', KEYS[1], 'z', ARGV[3])
return {'ok', 0}
"""

LINK_VIEW = """
-- Read-only, for the link page. ARGV: binding digest of this browser ('' for none).
-- Returns status (pending, used, denied, expired), seconds left, the binding
-- ('none': an unbound link, 'here': this browser asked, 'elsewhere'), and the
-- asking browser's user agent, IP and time of asking.
local st = redis.call('HMGET', KEYS[1], 'l', 'x', 'b', 'a', 'i', 's', 'p')
if not st[1] then return {'expired', 0, 'none', '', '', 0} end
if st[7] == 'd' then return {'denied', 0, 'none', '', '', 0} end
if not st[2] then return {'used', 0, 'none', '', '', 0} end
local left = tonumber(st[2]) - tonumber(redis.call('TIME')[1])
if left <= 0 then return {'expired', 0, 'none', '', '', 0} end
local binding = 'none'
if st[3] then binding = (st[3] == ARGV[1]) and 'here' or 'elsewhere' end
return {'pending', left, binding, st[4] or '', st[5] or '', tonumber(st[6] or '0')}
"""

DECIDE = _END_PENDING + """
-- Approve or deny, on another device, the sign-in of the browser that asked.
-- ARGV: link_digest, 'approve' or 'deny', digest of the number typed ('' for deny).
-- A wrong number denies: the person approving cannot see the asking screen.
local now = tonumber(redis.call('TIME')[1])
local st = redis.call('HMGET', KEYS[1], 'l', 'x', 'b', 'y', 'p')
if not st[1] then return {'expired', 0} end
if st[1] ~= ARGV[1] then return {'invalid', 0} end
if st[5] == 'd' then return {'denied', 0} end
if not st[2] then return {'used', 0} end
if tonumber(st[2]) <= now then return {'expired', 0} end
if not st[3] then return {'unbound', 0} end
if st[5] == 'a' then return {'approved', 0} end
if ARGV[2] == 'approve' and st[4] == ARGV[3] then
  redis.call('HSET', KEYS[1], 'p', 'a')
  return {'approved', 0}
end
end_pending(nil)
redis.call('HSET', KEYS[1], 'p', 'd')
if ARGV[2] == 'approve' then return {'mismatch', 0} end
return {'denied', 0}
"""

COLLECT_APPROVAL = _END_PENDING + """
-- The asking browser polls: is its sign-in approved elsewhere? Approved is
-- taken once. ARGV: binding digest of this browser.
local now = tonumber(redis.call('TIME')[1])
local st = redis.call('HMGET', KEYS[1], 'b', 'p', 'x', 'c')
if not st[1] or st[1] ~= ARGV[1] then return {'unbound', 0} end
if st[2] == 'd' then return {'denied', 0} end
if not st[3] then return {'used', 0} end
local left = tonumber(st[3]) - now
if left <= 0 then return {'expired', 0} end
if st[2] == 'a' then
  end_pending(st[4])
  return {'ok', 0}
end
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
class Asker:
    """The browser a link is bound to: its binding's and approval number's digests, and
    what the approval page shows of it."""

    binding: bytes
    number: bytes
    user_agent: str
    ip: str


COUNT_FAILURE = _KEEP + """
-- A failed sign-in other than by code (a passkey assertion that does not verify):
-- counted with the code's failures, towards the same lock. ARGV: max_failures, lockout
local now = tonumber(redis.call('TIME')[1])
local failures = redis.call('HINCRBY', KEYS[1], 'f', 1)
local lockout = tonumber(ARGV[2])
if failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'f', 0, 'u', now + lockout)
  keep(KEYS[1], lockout)
  return lockout
end
keep(KEYS[1], lockout)
return 0
"""

LOCK_STATE = """
-- Seconds the email stays locked (0: not locked); a success clears the failures.
-- ARGV: 'clear' to reset the failure count
local until_ = tonumber(redis.call('HGET', KEYS[1], 'u') or '0')
local left = until_ - tonumber(redis.call('TIME')[1])
if left > 0 then return left end
if ARGV[1] == 'clear' then redis.call('HDEL', KEYS[1], 'f', 'u') end
return 0
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
_COUNT_FAILURE, _LOCK_STATE = map(_script, (COUNT_FAILURE, LOCK_STATE))
_CONSUME_LINK, _LINK_VIEW, _DECIDE, _COLLECT = map(
    _script, (CONSUME_LINK, LINK_VIEW, DECIDE, COLLECT_APPROVAL)
)


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
    asker: Asker | None = None,
    windows: Windows = NO_WINDOWS,
) -> Outcome:
    """Replace the email's code (and link, bound to `asker`'s browser when given); refused
    inside the cooldown, over the hourly cap, or over a per-IP window (`windows`,
    counted first, in the same script)."""
    with_link = link_digest is not None and sealed_email is not None
    bound = asker is not None and with_link
    args: list[bytes | str | int] = [
        digest, ttl, cooldown, hourly_limit,
        link_digest if with_link else "", sealed_email if with_link else "",  # type: ignore[list-item]
        *((asker.binding, asker.number, asker.user_agent, asker.ip)  # type: ignore[union-attr]
          if bound else ("", "", "", "")),
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
        [digest, max_attempts, max_failures, lockout, call_nonce(), *windows.args],
    )


def consume_link(tag: str, digest: bytes, binding: bytes | None) -> Outcome:
    """Atomically use the pending link: ok, invalid, used, denied, expired, or unbound
    (bound to another browser); anything but ok changes nothing."""
    return _run(_CONSUME_LINK, [code_key(tag)], [digest, binding or "", call_nonce()])


def call_nonce() -> bytes:
    """Random per call, the same across the client's retries of it (see redis_client)."""
    return os.urandom(12)


@dataclass(frozen=True)
class LinkView:
    """What the link page needs: the link's state and who asked for it."""

    status: str  # pending, used, denied, expired
    seconds_left: int
    binding: str  # none, here, elsewhere
    user_agent: str
    ip: str
    asked_at: int


def link_view(tag: str, binding: bytes | None) -> LinkView:
    """Without consuming anything: the link's state and its binding, seen from this browser."""
    status, left, where, agent, ip, asked = _LINK_VIEW(
        keys=[code_key(tag)], args=[binding or ""], client=redis_client()
    )
    return LinkView(
        status.decode(), int(left), where.decode(),
        agent.decode(errors="replace"), ip.decode(errors="replace"), int(asked),
    )


def decide(tag: str, link_digest: bytes, *, approve: bool, number_digest: bytes | None) -> Outcome:
    """Approve (with the number's digest) or deny the asking browser's sign-in."""
    args = [link_digest, "approve" if approve else "deny", number_digest or ""]
    return _run(_DECIDE, [code_key(tag)], args)  # type: ignore[arg-type]


def collect_approval(tag: str, binding: bytes) -> Outcome:
    """The asking browser's poll: ok (approved; the code is used now), pending, denied,
    used, expired, or unbound (this browser did not ask)."""
    return _run(_COLLECT, [code_key(tag)], [binding])


def locked_for(tag: str, *, clear_failures: bool = False) -> int:
    """Seconds the email is locked for; 0 when it is not (and then, optionally, a
    success resets its failure count)."""
    left = _LOCK_STATE(
        keys=[code_key(tag)], args=["clear" if clear_failures else ""], client=redis_client()
    )
    return int(left)


def count_failure(tag: str, *, max_failures: int, lockout: int) -> int:
    """Count a failed sign-in; the lock's length when this one set it, else 0."""
    return int(
        _COUNT_FAILURE(keys=[code_key(tag)], args=[max_failures, lockout], client=redis_client())
    )


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
