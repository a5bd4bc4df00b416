"""The audit log: the events of a full sign-in, written in batches off the request, kept
through a database outage, read back by the CLI and by the user's activity API."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_email_signin import audit
from flask_email_signin.audit import AuditLog
from flask_email_signin.audit_store import AuditStore, audit_table, network_of
from flask_email_signin.codes import email_tag
from support import AuthActions, other_code


def state(app: Flask) -> Any:
    return app.extensions["email_signin"]


def events_of(app: Flask, email: str, user_id: int | None = None) -> list[Any]:
    """Every event of `email` (and its account), oldest first, after a flush."""
    with app.app_context():
        state(app).audit.flush()
        found = state(app).audit.store.events(
            user_id=user_id, email_tag=email_tag(email), limit=None, newest_first=False
        )
    return found


@contextmanager
def statements_on(app: Flask) -> Iterator[list[str]]:
    """The SQL statements this thread sends to the app's database meanwhile."""
    seen: list[str] = []
    me = threading.get_ident()
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() == me:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_a_full_sign_in_is_in_the_audit_log_in_order_without_a_secret(
    auth: AuthActions, email: str, app: Flask
) -> None:
    auth.request_code(email)
    code = auth.read_code_from_inbox(email)
    assert auth.verify(email, other_code(code)).status_code == 401
    signed_in = auth.verify(email, code)
    user_id = signed_in.get_json()["user"]["id"]
    assert auth.client.post("/auth/refresh", headers=auth.csrf_header("refresh")).status_code == 200
    assert auth.client.post("/auth/logout", headers=auth.csrf_header()).status_code == 200

    events = events_of(app, email, user_id)
    names = [event.event for event in events]
    assert names[0] == "code.requested"
    for expected in ("code.sent", "code.wrong", "code.verified", "user.created",
                     "session.started", "session.refreshed", "session.ended"):
        assert expected in names, names
    order = [names.index(n) for n in ("code.wrong", "code.verified", "session.started",
                                      "session.refreshed", "session.ended")]
    assert order == sorted(order)
    started = events[names.index("session.started")]
    assert started.user_id == user_id and started.email_tag == email_tag(email)
    assert started.detail["method"] == "code"
    assert started.ip == "127.0.0.1" and started.user_agent.startswith("Werkzeug")
    assert started.request_id  # the request's id, as in the log lines
    assert events[names.index("code.wrong")].detail == {"reason": "wrong"}
    ended = events[names.index("session.ended")]
    assert ended.detail["reason"] == "logout" and ended.detail["by"] == "user"
    # The sent event comes from the worker, with the request id of the request that asked.
    assert events[names.index("code.sent")].request_id == events[0].request_id
    text = json.dumps([event.to_dict() for event in events])
    token = signed_in.get_json()["access_token"]
    assert code not in text and token not in text and email not in text


def test_request_and_verify_send_no_audit_statement_to_the_database(
    auth: AuthActions, email: str, app: Flask
) -> None:
    with statements_on(app) as during_request:
        assert auth.request_code(email).status_code == 202
    assert during_request == []
    code = auth.read_code_from_inbox(email)
    with statements_on(app) as during_verify:
        assert auth.verify(email, code).status_code == 200
    assert len(during_verify) == 1 and "audit" not in during_verify[0]  # the user upsert
    # Written later, in one batch, by the flusher.
    assert {"code.requested", "session.started"} <= {e.event for e in events_of(app, email)}


def test_events_wait_out_a_database_outage_and_are_written_after_it(tmp_path: Any) -> None:
    """A real outage: the table is missing until the 'database' comes back."""
    app = Flask("audit-outage")
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/audit.db", SECRET_KEY="x" * 32)
    db = SQLAlchemy(app)
    table = audit_table(db)
    log = AuditLog(app=weakref.ref(app), store=AuditStore(db, table), enabled=True,
                   flush_seconds=60, max_buffered=3)
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.7"}):
        for number in range(5):
            log.record(audit.CODE_REQUESTED, email=f"n{number}@example.com")
        assert log.flush() == 0  # no table: nothing written, nothing lost but the overflow
        db.create_all()
        assert log.flush() == 3
        rows = AuditStore(db, table).events(limit=None, newest_first=False)
        assert [row.email_tag for row in rows] == [
            email_tag(f"n{n}@example.com") for n in (2, 3, 4)
        ]
    assert {row.ip for row in rows} == {"192.0.2.7"}


def test_the_cli_lists_exports_and_prunes(auth: AuthActions, email: str, app: Flask) -> None:
    auth.sign_in(email)
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["audit", "list", "--user", email, "--event", "session.*"])
    assert listed.exit_code == 0, listed.output
    assert "session.started" in listed.output and "1 event(s)" in listed.output
    exported = runner.invoke(args=["audit", "export", "--user", email])
    lines = [json.loads(line) for line in exported.output.splitlines()]
    assert [line["event"] for line in lines][:1] == ["code.requested"]
    assert {"code.sent", "code.verified", "session.started"} <= {line["event"] for line in lines}
    as_csv = runner.invoke(args=["audit", "export", "--user", email, "--format", "csv"])
    assert as_csv.output.splitlines()[0].startswith("id,at,event,user_id")
    bad = runner.invoke(args=["audit", "list", "--event", "nonsense"])
    assert bad.exit_code == 2 and "one of code.requested" in bad.output

    # Prune: an event dated before the retention period goes, a recent one stays.
    with app.app_context():
        store = state(app).audit.store
        old = datetime.now(UTC) - timedelta(days=app.config["OTP_AUDIT_RETENTION_DAYS"] + 1)
        store.insert([{"at": old, "event": "code.requested", "user_id": None,
                       "email_tag": "old-event-tag", "ip": "", "user_agent": "",
                       "request_id": "", "detail": {}}])
    pruned = runner.invoke(args=["audit", "prune"])
    assert pruned.exit_code == 0 and "older than 90 day(s)" in pruned.output
    with app.app_context():
        assert store.events(email_tag="old-event-tag") == []
    assert events_of(app, email) != []


def test_the_user_sees_their_recent_activity(auth: AuthActions, email: str, app: Flask) -> None:
    auth.sign_in(email)
    assert app.test_client().post(  # a failed try from elsewhere shows up too
        "/auth/verify-otp", json={"email": email, "otp": "000000"}
    ).status_code in (400, 401)
    activity = auth.client.get("/auth/me/activity")
    assert activity.status_code == 200
    events = activity.get_json()["events"]
    started = [e for e in events if e["event"] == "session.started"]
    assert started and started[0]["current"] is True and started[0]["method"] == "code"
    assert started[0]["ip"] == "127.0.0.1" and started[0]["device"]
    assert events[0]["event"] == "code.wrong"  # newest first
    assert all(e["event"] != "code.requested" for e in events)  # sign-in activity only
    assert app.test_client().get("/auth/me/activity").status_code == 401


@pytest.mark.parametrize(("ip", "network"), [
    ("203.0.113.45", "203.0.113.0/24"), ("2001:db8:1:2::9", "2001:db8:1::/48"), ("", ""),
])
def test_pseudonymised_addresses_keep_only_the_network(ip: str, network: str) -> None:
    assert network_of(ip) == network
