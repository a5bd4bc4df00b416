#!/bin/sh
# Container entry point: migrate the database, then become gunicorn (so it gets SIGTERM).
set -eu

# The database may still be starting, or another replica may be migrating it: retry a while.
attempt=1
until flask db upgrade; do
  if [ "$attempt" -ge "${DB_UPGRADE_ATTEMPTS:-10}" ]; then
    echo "flask db upgrade failed $attempt times; giving up." >&2
    exit 1
  fi
  echo "flask db upgrade failed; retrying in 3 s ($attempt)." >&2
  attempt=$((attempt + 1))
  sleep 3
done

exec gunicorn -c gunicorn.conf.py wsgi:app
