"""The lean hot paths agree with the library paths they stand in for.

The token decoder must accept exactly the tokens flask-jwt-extended accepts (and leave
every refusal to it); the state client's own-connection scripts must answer as redis-py's
full path does, including when the script is not loaded, the connection dies, or the
process forks.
"""

from __future__ import annotations

import base64
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask_jwt_extended import JWTManager, create_access_token
from flask_jwt_extended import tokens as jwt_tokens
from live_stack import private_redis

from flask_email_signin import lean_tokens
from flask_email_signin.kept_connections import KeptConnections
from flask_email_signin.lean_tokens import LeanDecoder, LeanEncoder, verified_claims
from flask_email_signin.redis_client import LeanRedis, lua_script, redis_from_url

ECHO = lua_script("return {KEYS[1], ARGV[1]}")
COUNT = lua_script("return redis.call('INCR', KEYS[1])")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def resign(token: str, key: str, *, header: dict[str, Any] | None = None,
           claims: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
           algorithm: str = "HS256") -> str:
    """The token's claims, changed by `claims`, signed again with `key`."""
    payload = pyjwt.decode(token, options={"verify_signature": False})
    if claims is not None:
        payload = claims(payload)
    return pyjwt.encode(payload, key, algorithm=algorithm, headers=header)


def with_claim(name: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda claims: {**claims, name: value}


def without_claim(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda claims: {k: v for k, v in claims.items() if k != name}


def non_canonical(token: str) -> str:
    """The same signature bytes, written with a different last base64 character."""
    head, _, signature = token.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    # A 43-character HS256 signature: the last character carries 2 bits and 4 unused ones.
    return f"{head}.{signature[:-1]}{alphabet[last | 1]}"


def outcome(decode: Callable[..., dict[str, Any]], token: Any, csrf: str | None) -> Any:
    try:
        return ("claims", decode(token, csrf))
    except Exception as error:  # the exception type is what is compared
        return ("error", type(error).__name__)


@pytest.fixture
def decoder(app: Flask) -> Iterator[LeanDecoder]:
    manager = app.extensions["flask-jwt-extended"]
    lean = manager._decode_jwt_from_config
    assert isinstance(lean, LeanDecoder), "init_app installs the lean decoder"
    with app.test_request_context():
        yield lean


def token_cases(app: Flask) -> dict[str, tuple[Any, str | None]]:
    key = app.config["JWT_SECRET_KEY"]
    good = create_access_token("42", additional_claims={"sid": "s" * 22})
    csrf = pyjwt.decode(good, options={"verify_signature": False})["csrf"]
    now = int(time.time())
    return {
        "valid": (good, None),
        "valid with its csrf value": (good, csrf),
        "csrf mismatch": (good, "not-the-csrf-value"),
        "other key": (resign(good, "another-key-" + "x" * 40), None),
        "expired": (resign(good, key, claims=with_claim("exp", now - 5)), None),
        "not yet valid": (resign(good, key, claims=with_claim("nbf", now + 60)), None),
        "issued in the future": (resign(good, key, claims=with_claim("iat", now + 60)), None),
        "exp as a float": (resign(good, key, claims=with_claim("exp", now + 60.5)), None),
        "exp as text": (resign(good, key, claims=with_claim("exp", "soon")), None),
        "other audience": (resign(good, key, claims=with_claim("aud", "elsewhere")), None),
        "audience list": (resign(good, key, claims=with_claim("aud", ["passwordless"])), None),
        "no audience": (resign(good, key, claims=without_claim("aud")), None),
        "other issuer": (resign(good, key, claims=with_claim("iss", "elsewhere")), None),
        "no subject": (resign(good, key, claims=without_claim("sub")), None),
        "numeric subject": (resign(good, key, claims=with_claim("sub", 42)), None),
        "numeric jti": (resign(good, key, claims=with_claim("jti", 7)), None),
        "no jti, type or fresh": (
            resign(good, key, claims=lambda c: {k: v for k, v in c.items()
                                                 if k not in ("jti", "type", "fresh")}), None),
        "HS512 header": (resign(good, key, algorithm="HS512"), None),
        "extra header": (resign(good, key, header={"kid": "k1"}), None),
        "alg none": (pyjwt.encode(pyjwt.decode(good, options={"verify_signature": False}),
                                  None, algorithm="none"), None),
        "non-canonical signature": (non_canonical(good), None),
        "padded signature": (good + "=", None),
        "junk in a segment": (good.replace(".", ".!", 1), None),
        "four segments": (good + ".e30", None),
        "payload not an object": (
            f"{good.split('.')[0]}.{b64(b'[1]')}.{good.split('.')[2]}", None),
        "non-ascii": (good[:-2] + "é", None),
        "bytes": (good.encode(), None),
        "empty": ("", None),
    }


def test_the_lean_decoder_accepts_and_refuses_exactly_what_the_library_does(
    app: Flask, decoder: LeanDecoder
) -> None:
    cases = token_cases(app)
    for name, (token, csrf) in cases.items():
        lean, library = outcome(decoder, token, csrf), outcome(decoder.library_decode, token, csrf)
        assert lean == library, name
    # The corpus exercises both sides: valid tokens, and refusals of each kind.
    assert outcome(decoder, *cases["valid"])[0] == "claims"
    assert outcome(decoder, *cases["csrf mismatch"]) == ("error", "CSRFError")
    assert outcome(decoder, *cases["expired"]) == ("error", "ExpiredSignatureError")
    assert outcome(decoder, *cases["non-canonical signature"])[0] == "error"


def test_valid_tokens_take_the_lean_path_and_refusals_the_librarys(
    app: Flask, decoder: LeanDecoder
) -> None:
    cases = token_cases(app)
    lean_accepts = [name for name, (token, csrf) in cases.items()
                    if verified_claims(token, csrf) is not None]
    # "exp as a float" is valid for the library too; the lean path leaves it to it.
    assert lean_accepts == ["valid", "valid with its csrf value", "no jti, type or fresh"]


def test_a_changed_decode_setting_is_seen_at_once(app: Flask, decoder: LeanDecoder,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = token_cases(app)["valid"]
    assert verified_claims(token, None) is not None
    monkeypatch.setitem(app.config, "JWT_DECODE_AUDIENCE", "another-audience")
    assert verified_claims(token, None) is None
    assert outcome(decoder, token, None) == ("error", "InvalidAudienceError")


def test_a_host_decode_key_callback_keeps_the_library_path(
    app: Flask, decoder: LeanDecoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = token_cases(app)["valid"]
    asked: list[str] = []

    def decode_key(_header: dict[str, Any], claims: dict[str, Any]) -> str:
        asked.append(claims["sub"])
        return str(app.config["JWT_SECRET_KEY"])

    monkeypatch.setattr(decoder.manager, "_decode_key_callback", decode_key)
    assert outcome(decoder, token, None)[0] == "claims"
    assert asked == ["42"]


class FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> FrozenDatetime:
        return cls(2026, 11, 30, 12, 0, 0, 123456, tzinfo=tz)


@pytest.fixture
def frozen_tokens(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """The same clock, and the same ids after each call of the returned reset, for the
    library's encode and the lean one."""
    ids: list[Iterator[uuid.UUID]] = []

    def reset() -> None:
        ids[:] = [iter(uuid.UUID(int=n) for n in range(1000))]

    reset()
    monkeypatch.setattr(uuid, "uuid4", lambda: next(ids[0]))
    monkeypatch.setattr(jwt_tokens, "datetime", FrozenDatetime)
    monkeypatch.setattr(lean_tokens, "datetime", FrozenDatetime)
    return reset


@pytest.mark.parametrize("kind", ["access", "refresh", "fresh access", "with headers"])
def test_the_lean_encoder_makes_the_librarys_tokens_byte_for_byte(
    app: Flask, frozen_tokens: Callable[[], None], kind: str
) -> None:
    manager = app.extensions["flask-jwt-extended"]
    lean = manager._encode_jwt_from_config
    assert isinstance(lean, LeanEncoder), "init_app installs the lean encoder"
    library = partial(JWTManager._encode_jwt_from_config, manager)
    options: dict[str, Any] = {"claims": {"sid": "s" * 22, "roles": ["admin"], "auth_time": 7}}
    if kind == "fresh access":
        options["fresh"] = timedelta(minutes=5)
    if kind == "with headers":
        options["headers"] = {"kid": "key-1"}
    token_type = "refresh" if kind == "refresh" else "access"
    made = []
    with app.test_request_context():
        for encode in (lean, library):
            frozen_tokens()
            made.append(encode("42", token_type, **options))
    assert made[0] == made[1]
    assert pyjwt.get_unverified_header(made[0])["alg"] == "HS256"


def test_lean_tokens_are_accepted_by_the_library(app: Flask, decoder: LeanDecoder) -> None:
    token = create_access_token("42", additional_claims={"sid": "s" * 22})
    claims = decoder.library_decode(token, None, False)
    assert claims["sub"] == "42" and claims["sid"] == "s" * 22 and claims["type"] == "access"


# ---- the state store's own-connection scripts ------------------------------------------

@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with private_redis(tmp_path) as url:
        yield url


@pytest.fixture
def state_client(server: str) -> Iterator[Callable[..., Any]]:
    """Builds state-store clients on the private server; closes them afterwards."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        client = redis_from_url(f"{server}/0", **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def admin(server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server)
    yield client
    client.close()


def test_a_script_runs_on_the_threads_own_connection_and_is_loaded_on_first_use(
    state_client: Callable[..., Any], admin: redis.Redis,
) -> None:
    client = state_client(retry_seconds=2)
    assert isinstance(client, LeanRedis) and client.lean
    assert ECHO(keys=["k"], args=["v"], client=client) == [b"k", b"v"]  # NOSCRIPT, loaded
    assert ECHO(keys=["k"], args=["w"], client=client) == [b"k", b"w"]
    names = [c["name"] for c in admin.client_list()]
    assert len(names) == 3  # the full path's pooled connection, ours, this listing's
    assert client.script_exists(ECHO.sha) == [True]


@pytest.mark.parametrize("retry_seconds", [0, 2])
def test_an_idle_connection_closed_by_the_server_is_replaced(
    state_client: Callable[..., Any], admin: redis.Redis, retry_seconds: float,
) -> None:
    # As redis-py's pool does: checked before sending. A reply lost after sending goes to
    # the retrying client, or is a 503 with retries off (test_redis_retries, on this path).
    client = state_client(retry_seconds=retry_seconds)
    assert COUNT(keys=["n"], client=client) == 1
    admin.client_kill_filter(_type="normal", skipme=True)
    assert COUNT(keys=["n"], client=client) == 2
    assert admin.get("n") == b"2"


def test_a_finished_threads_redis_connection_is_closed(
    state_client: Callable[..., Any], admin: redis.Redis,
) -> None:
    client = state_client(retry_seconds=2)
    assert COUNT(keys=["n"], client=client) == 1
    before = len(admin.client_list())
    answers: list[Any] = []
    for _ in range(3):
        thread = threading.Thread(
            target=lambda: answers.append(COUNT(keys=["n"], client=client))
        )
        thread.start()
        thread.join()
        assert len(admin.client_list()) == before  # its connection went with it
    assert answers == [2, 3, 4]


def test_a_forked_child_opens_its_own_connection(state_client: Callable[..., Any]) -> None:
    client = state_client(retry_seconds=2)
    assert COUNT(keys=["n"], client=client) == 1
    pid = os.fork()
    if pid == 0:  # the child: a socket shared with the parent would mix their replies
        code = 0 if COUNT(keys=["n"], client=client) == 2 else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert COUNT(keys=["n"], client=client) == 3


def test_tracing_keeps_scripts_on_the_instrumented_path(
    state_client: Callable[..., Any],
) -> None:
    client = state_client(lean=False)
    sent: list[tuple[Any, ...]] = []
    original = client.execute_command

    def spy(*args: Any, **options: Any) -> Any:
        sent.append(args)
        return original(*args, **options)

    client.execute_command = spy  # type: ignore[method-assign]
    assert ECHO(keys=["k"], args=["v"], client=client) == [b"k", b"v"]
    assert sent[-1][:3] == ("EVALSHA", ECHO.sha, 1)
    assert client._own.count() == 0  # no connection of its own was opened


# ---- the hot statements' kept database connections -------------------------------------

@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


def test_a_thread_keeps_one_autocommit_connection(engine: sa.Engine) -> None:
    kept = KeptConnections()
    first = kept.run(engine, lambda conn: conn)
    assert kept.run(engine, lambda conn: conn) is first
    assert first.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
    other: list[sa.Connection] = []
    thread = threading.Thread(target=lambda: other.append(kept.run(engine, lambda c: c)))
    thread.start()
    thread.join()
    assert other and other[0] is not first  # each thread its own
    kept.close()
    assert engine.pool.checkedout() == 0  # returned to the pool, not left to the collector


def test_a_finished_threads_connection_goes_back_to_the_pool(engine: sa.Engine) -> None:
    # A server may start a thread per request (`flask run`): none may keep a connection.
    kept = KeptConnections()
    for _ in range(3):
        thread = threading.Thread(
            target=lambda: kept.run(engine, lambda c: c.execute(sa.text("SELECT 1")).scalar())
        )
        thread.start()
        thread.join()
        assert engine.pool.checkedout() == 0
    kept.close()


def test_a_dropped_connection_is_replaced_and_the_statement_run_again(engine: sa.Engine) -> None:
    kept = KeptConnections()
    first = kept.run(engine, lambda conn: conn)
    first.connection.dbapi_connection.close()  # as a database restart would  # type: ignore
    runs: list[sa.Connection] = []

    def select_one(conn: sa.Connection) -> Any:
        runs.append(conn)
        return conn.execute(sa.text("SELECT 1")).scalar()

    assert kept.run(engine, select_one) == 1
    assert len(runs) == 2 and runs[1] is not first
    kept.close()


def test_other_database_errors_are_raised_as_they_are(engine: sa.Engine) -> None:
    kept = KeptConnections()
    with pytest.raises(sa.exc.DBAPIError):
        kept.run(engine, lambda conn: conn.execute(sa.text("SELECT * FROM no_such_table")))
    assert kept.run(engine, lambda conn: conn.execute(sa.text("SELECT 2")).scalar()) == 2
    kept.close()


def test_the_profile_read_answers_as_core_does_on_either_path(app: Flask) -> None:
    users = app.extensions["email_signin"].users
    with app.app_context():
        engine = users.db.engine
        user = users.sign_in(f"profile-{uuid.uuid4().hex[:8]}@example.com", allow_signup=True)
        with engine.connect() as conn:
            expected = conn.execute(users._statements.profile, {"user_id": user.id}).first()
        # The driver's cursor only where Core would convert nothing (psycopg); else Core.
        assert (users._profile_query is not None) == (engine.dialect.driver == "psycopg")
        row = users.profile(user.id)
        assert tuple(row) == tuple(expected)
        assert row.email == user.email and row.roles == [] and row.created_at == user.created_at
        assert users.profile(10**9) is None
        # A listener of SQLAlchemy's cursor events (tracing, a query counter) sees the read.
        seen: list[str] = []

        def on_statement(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            seen.append(statement)

        sa.event.listen(engine, "before_cursor_execute", on_statement)
        try:
            assert tuple(users.profile(user.id)) == tuple(expected)
        finally:
            sa.event.remove(engine, "before_cursor_execute", on_statement)
        assert len(seen) == 1 and seen[0].lstrip().upper().startswith("SELECT")
        # A connection the database dropped is replaced, on the driver path too.
        kept = users._kept._connections.get(engine)
        kept.connection.dbapi_connection.close()
        assert tuple(users.profile(user.id)) == tuple(expected)
        assert users._kept._connections.get(engine) is not kept
