"""Malformed and hostile HTTP, by hand, to gunicorn alone and through the proxy in front.

Each request gets a clean answer, never a hang or a 5xx: the app's JSON when the request
reaches it; otherwise the server's own 4xx, which is gunicorn's plain HTML page, or for
nginx (deploy/nginx.conf) the app's JSON envelope from its error pages. The README
("Deployment") lists which layer answers what.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from typing import Any

import pytest
from live_stack import Answer, HTTPEndpoint, ProxyNode, WebNode

pytestmark = pytest.mark.live

READ_DEADLINE = 20.0  # nginx lingers up to 5 s after refusing a body it did not read

APP = "app"  # the app answered: JSON
SERVER = "server"  # gunicorn refused it before the app ran: its plain HTML page
PROXY = "proxy"  # nginx refused it before gunicorn saw it: the JSON envelope


def post(headers: str, body: bytes = b'{"email": "a@example.com"}') -> bytes:
    return (
        "POST /auth/request-otp HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: application/json\r\n{headers}Connection: close\r\n\r\n"
    ).encode() + body


MANY_HEADERS = "".join(f"X-Header-{n}: {n}\r\n" for n in range(100))

# name: (raw request, {target: (status, who answered, JSON error code or None)})
CASES: dict[str, tuple[bytes, dict[str, tuple[int, str, str | None]]]] = {
    # gunicorn serves an HTTP/1.1 request without Host; nginx follows RFC 9112 (400).
    "no Host header": (
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        {"gunicorn": (200, APP, None), "nginx": (400, PROXY, "bad_request")},
    ),
    "HTTP/1.0 without Host": (
        b"GET /auth/openapi.json HTTP/1.0\r\n\r\n",
        {"gunicorn": (200, APP, None), "nginx": (200, APP, None)},
    ),
    "negative Content-Length": (
        post("Content-Length: -1\r\n"),
        {"gunicorn": (400, SERVER, None), "nginx": (400, PROXY, "bad_request")},
    ),
    "non-numeric Content-Length": (
        post("Content-Length: twelve\r\n"),
        {"gunicorn": (400, SERVER, None), "nginx": (400, PROXY, "bad_request")},
    ),
    # Larger than any integer nginx parses; gunicorn hands it to the app, which refuses
    # it from the header alone.
    "huge Content-Length": (
        post("Content-Length: 99999999999999999999999\r\n"),
        {"gunicorn": (413, APP, "payload_too_large"), "nginx": (400, PROXY, "bad_request")},
    ),
    "Content-Length of 10 MB, short body": (
        post("Content-Length: 10000000\r\n"),
        {"gunicorn": (413, APP, "payload_too_large"),
         "nginx": (413, PROXY, "payload_too_large")},
    ),
    "Content-Length twice, same value": (
        post("Content-Length: 26\r\nContent-Length: 26\r\n"),
        {"gunicorn": (400, SERVER, None), "nginx": (400, PROXY, "bad_request")},
    ),
    "Content-Length twice, different values": (
        post("Content-Length: 26\r\nContent-Length: 5\r\n"),
        {"gunicorn": (400, SERVER, None), "nginx": (400, PROXY, "bad_request")},
    ),
    # The request-smuggling shape: refused by both, never read one way by each.
    "Content-Length and Transfer-Encoding": (
        post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n"),
        {"gunicorn": (400, SERVER, None), "nginx": (400, PROXY, "bad_request")},
    ),
    "100 headers": (
        f"GET /healthz HTTP/1.1\r\nHost: localhost\r\n{MANY_HEADERS}Connection: close\r\n\r\n"
        .encode(),
        {"gunicorn": (200, APP, None), "nginx": (200, APP, None)},
    ),
}


class Recorded(io.BytesIO):
    """What a server sent, as the socket http.client reads responses from."""

    def makefile(self, *_: Any, **__: Any) -> Recorded:
        return self

    def close(self) -> None:
        """http.client closes its file after each response; the next one follows in it."""


def exchange_raw(endpoint: HTTPEndpoint, data: bytes, *, half_close: bool = False) -> bytes:
    """Send `data`, then read until the server closes (failing past READ_DEADLINE)."""
    deadline = time.monotonic() + READ_DEADLINE
    received = b""
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=READ_DEADLINE) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
            assert time.monotonic() < deadline, f"still open after {READ_DEADLINE}s"
    return received


def answers(received: bytes) -> list[Answer]:
    """Every response in what a connection received, in order."""
    stream = Recorded(received)
    parsed = []
    while stream.tell() < len(received):
        response = http.client.HTTPResponse(stream)  # type: ignore[arg-type]
        response.begin()
        parsed.append(Answer(response.status, response.getheaders(), response.read()))
    return parsed


def check(answer: Answer, status: int, who: str, code: str | None) -> None:
    assert answer.status == status, answer
    if who == SERVER:
        assert (answer.header("Content-Type") or "").startswith("text/html"), answer
    else:
        assert (answer.header("Content-Type") or "").startswith("application/json"), answer
        if code is not None:
            assert answer.error_code() == code


@pytest.fixture(params=["gunicorn", "nginx"])
def target(request: pytest.FixtureRequest) -> tuple[str, HTTPEndpoint]:
    """gunicorn alone (`served`), or nginx in front of it (`proxied`)."""
    name = request.param
    endpoint: WebNode | ProxyNode = request.getfixturevalue(
        "served" if name == "gunicorn" else "proxied"
    )
    return name, endpoint


@pytest.mark.parametrize("case", list(CASES))
def test_nasty_requests_get_a_clean_answer(target: tuple[str, HTTPEndpoint], case: str) -> None:
    name, endpoint = target
    data, expected = CASES[case]
    started = time.monotonic()
    [answer] = answers(exchange_raw(endpoint, data))
    check(answer, *expected[name])
    assert time.monotonic() - started < READ_DEADLINE


def test_a_pipelined_pair_gets_two_answers_in_order(target: tuple[str, HTTPEndpoint]) -> None:
    _, endpoint = target
    pair = (
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"GET /auth/openapi.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    first, second = answers(exchange_raw(endpoint, pair))
    assert (first.status, first.json()) == (200, {"status": "ok"})
    assert second.status == 200 and second.json()["openapi"].startswith("3.")


def test_a_body_shorter_than_its_length_then_end_of_stream(
    target: tuple[str, HTTPEndpoint],
) -> None:
    """The client announces 100 bytes, sends 9 and closes its side: nothing hangs."""
    name, endpoint = target
    received = exchange_raw(endpoint, post("Content-Length: 100\r\n", b'{"email":'),
                            half_close=True)
    if name == "nginx":
        assert received == b""  # nginx drops a request whose client went away (its 499)
    else:
        [answer] = answers(received)
        check(answer, 400, APP, "malformed_json")
