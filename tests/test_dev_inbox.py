"""The development inbox of `make run`: a summary line with the code, then the email."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from flask import Flask
from live_stack import spawn, stop, wait_until

from app import create_app
from app.devtools.redis_server import free_port
from flask_email_signin.login_email import send_login_code_email
from support import make_config, new_email

pytestmark = pytest.mark.live


def test_the_printing_inbox_starts_each_email_with_its_code(
    app: Flask, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """What the README shows of `make run`: `inbox.1 | === email to ...: code 123456 ===`."""
    port = free_port()
    output = tmp_path / "inbox.log"
    inbox = spawn([sys.executable, "-u", "-m", "app.devtools.inbox"],
                  {"MAIL_PORT": str(port), "PATH": "/usr/bin:/bin"}, output)
    try:
        wait_until(lambda: "Local SMTP inbox" in output.read_text(), 20, "the inbox to start")
        sender = create_app(make_config(redis_url, database_url, port))
        email = new_email("printed")
        with sender.test_request_context():
            send_login_code_email(email, "482913", int(time.time()) + 600, "s" * 43)
        wait_until(lambda: "=== end ===" in output.read_text(), 20, "the email to be printed")
    finally:
        stop(inbox)
    lines = output.read_text().splitlines()
    summary = next(line for line in lines if line.startswith("=== email to"))
    assert summary == f"=== email to {email}: code 482913 ==="
    # The whole text part follows: the code again, the one-click link.
    body = "\n".join(lines[lines.index(summary):])
    assert re.search(r"^\s+482913$", body, re.M) and "/auth/link/" in body
