"""Local development helpers: a Redis server and an SMTP inbox for `make run` and tests."""

from __future__ import annotations

import signal


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM (Ctrl-C under honcho)."""
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    signal.sigwait(signals)
