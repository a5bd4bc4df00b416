"""Every Redis key of webhooks, in one place: the dead letters.

Keys (the `{webhooks}` hash tag keeps both in one cluster slot, for the script):

- `{webhooks}:dead` - list, the most recent dead letters first, capped at
  DEAD_LETTERS_KEPT: JSON records of webhooks whose every attempt failed (`id`,
  `url`, `type`, `attempts`, `status`, `error`, `at`). Never the secret or payload.
- `{webhooks}:dead:count` - integer, every dead letter since the last `--clear`
  (the list forgets the oldest; this does not).
"""

from __future__ import annotations

import json
from typing import Any

from .redis_client import lua_script
from .state import redis_client

DEAD = "{webhooks}:dead"
DEAD_COUNT = "{webhooks}:dead:count"
DEAD_LETTERS_KEPT = 1000

ADD_DEAD = lua_script("""
-- KEYS: list, count. ARGV: record, how many records to keep
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return redis.call('INCR', KEYS[2])
""")


def add_dead_letter(record: dict[str, Any]) -> int:
    """Keep `record` at the head of the list; returns the dead-letter count."""
    return int(ADD_DEAD(keys=[DEAD, DEAD_COUNT],
                        args=[json.dumps(record, sort_keys=True), DEAD_LETTERS_KEPT],
                        client=redis_client()))


def dead_letters(limit: int) -> tuple[int, list[dict[str, Any]]]:
    """The dead-letter count and the `limit` most recent records, newest first."""
    client = redis_client()
    count = client.get(DEAD_COUNT)
    records = client.lrange(DEAD, 0, max(limit, 1) - 1) if limit > 0 else []
    return int(count or 0), [json.loads(record) for record in records]


def clear_dead_letters() -> None:
    redis_client().delete(DEAD, DEAD_COUNT)
