"""gunicorn settings for deployment: `gunicorn -c gunicorn.conf.py wsgi:app`.

Worker model: `gthread`, one process per core and a few threads each. A sign-in
request spends most of its time waiting on Redis, the database and the broker
(each a sub-millisecond to few-millisecond round trip); threads overlap those
waits while processes give each core its own interpreter (the GIL lets one
thread of a process run Python at a time). The benchmark (bench/, `make bench`)
uses the same model; docs/SCALING.md turns its figures into node counts.
Async workers (gevent/eventlet) would need monkey-patching of redis-py,
Celery's publisher and the database driver for little gain at these latencies.

Every setting can be overridden on the command line (`--workers 1`) or with the
environment variables named below.
"""

from __future__ import annotations

import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
worker_class = "gthread"
# One process per core (WEB_CONCURRENCY is the conventional override).
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))
# 4 threads: enough to overlap I/O waits of ~1 ms against ~2-3 ms of Python per request;
# more threads only queue on the GIL and raise latency.
threads = int(os.environ.get("GUNICORN_THREADS", "4"))

# A request makes a few Redis calls (each bounded by REDIS_SOCKET_TIMEOUT, 1 s), one
# database transaction and at most one broker publish: it never legitimately takes
# seconds. 30 s only catches a stuck worker, which the arbiter then replaces.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM the arbiter closes the listening socket, and each worker stops accepting
# and lets its in-flight requests finish for up to this long before being killed.
# Orchestrators must wait longer than this before SIGKILL (compose: stop_grace_period).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
# Idle keep-alive connections wait in the poller, not in a thread. Behind a load
# balancer set this above its idle timeout, or it may reuse a connection we just closed.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))

# Requests a client can reasonably send reach the app and get its JSON answers, never
# gunicorn's own HTML error pages: a header may be 32 KiB (gunicorn's default is 8 KiB; an
# oversized bearer token or cookie is then refused by the app, in JSON), a request line
# 8 KiB (gunicorn's largest short of unlimited; default 4 KiB) and there may be 200 headers
# (default 100). Past these (absurd requests) gunicorn still answers with its plain pages:
# 431 for a larger header or more headers, 414 for a longer request line, 400 for a request
# that is not HTTP.
limit_request_field_size = 32 * 1024
limit_request_line = 8190
limit_request_fields = 200

# Recycle workers now and then so slow leaks in any library cannot grow unbounded;
# jitter keeps all workers from restarting at once.
max_requests = 10_000
max_requests_jitter = 1_000

# Heartbeat files on tmpfs: a container's overlay disk can stall them and get healthy
# workers killed for "timeout".
SHARED_MEMORY = "/dev/shm"  # noqa: S108 (gunicorn makes its own files there with mkstemp)
worker_tmp_dir = SHARED_MEMORY if os.path.isdir(SHARED_MEMORY) else None

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
# The path without its query string: a query may carry a sign-in link's secret.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# gunicorn's own lines (start-up, worker boots and exits, access) as JSON too, through the
# app's own handler (flask_email_signin.logs: same fields, JWT-shaped text masked): the whole
# stream parses as JSON lines.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "error_console": {
            "()": "flask_email_signin.logs.json_log_handler", "stream": "ext://sys.stderr",
        },
        "console": {
            "()": "flask_email_signin.logs.json_log_handler", "stream": "ext://sys.stdout",
        },
    },
    "loggers": {
        "gunicorn.error": {
            "level": loglevel.upper(), "handlers": ["error_console"], "propagate": False,
        },
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}
