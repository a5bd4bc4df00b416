"""gunicorn settings of the benchmark (workers and threads are also passed on its command line).

2 workers x 4 threads (gthread) on a 2-core machine: one process per core for
the CPU-bound Python work (the GIL lets one thread run at a time), and
threads to overlap the waits on Redis, the broker and the database. No access
log: writing it would be measured too, and deployments differ in where it goes.
"""

worker_class = "gthread"
workers = 2
threads = 4
keepalive = 5
backlog = 2048
accesslog = None
errorlog = "-"
loglevel = "warning"
