"""A local SMTP inbox: accepts every message and keeps or prints it.

`python -m app.devtools.inbox` (used by `make run`) prints each received
email to the terminal, after a summary line with its code; the tests use `Inbox`
to read captured messages. A development tool: never part of a deployment.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import threading
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from . import wait_for_stop_signal


class Inbox:
    """aiosmtpd handler that stores parsed messages for readers to wait on."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        self.on_message(message)
        return "250 Message accepted for delivery"

    def on_message(self, message: EmailMessage) -> None:
        """Hook for subclasses (the printing inbox)."""

    def to(self, address: str) -> list[EmailMessage]:
        with self._arrived:
            return [m for m in self.messages if address in str(m.get("To", ""))]

    def wait_for(
        self, address: str, *, count: int = 1, timeout: float = 15.0
    ) -> list[EmailMessage]:
        """Block until `count` messages to `address` arrived; raise on timeout."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [m for m in self.messages if address in str(m.get("To", ""))]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no email to {address} within {timeout}s")
                self._arrived.wait(remaining)


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def printable_text(message: EmailMessage) -> str:
    """The text part with the line ends of a terminal (mail carries CRLF)."""
    return plain_text(message).replace("\r\n", "\n")


# The code as the sign-in email sets it: alone on an indented line.
_CODE_LINE = re.compile(r"^[ \t]+([0-9]{4,10})[ \t]*$", re.MULTILINE)


def summary(message: EmailMessage) -> str:
    """One line to spot in `make run`'s output: the recipient and the code, when there is one."""
    code = _CODE_LINE.search(printable_text(message))
    what = f"code {code.group(1)}" if code else f"subject {message['Subject']!r}"
    return f"=== email to {message['To']}: {what} ==="


class PrintingInbox(Inbox):
    """Prints a summary line with the code, then the whole text part (development only)."""

    def on_message(self, message: EmailMessage) -> None:
        print(
            f"\n{summary(message)}\nSubject: {message['Subject']}\n\n"
            f"{printable_text(message).rstrip()}\n=== end ===\n",
            flush=True,
        )


def start_inbox(inbox: Inbox, port: int) -> Controller:
    controller = Controller(inbox, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    return controller


def main() -> None:
    port = int(os.environ.get("MAIL_PORT", "1025"))
    controller = start_inbox(PrintingInbox(), port)
    print(f"Local SMTP inbox on 127.0.0.1:{port}: received emails are printed here.", flush=True)
    try:
        wait_for_stop_signal()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
