"""Administration from the command line: `flask users ...`, `flask mail ...`, `flask audit ...`.

Commands run inside the app context (Flask's AppGroup), against the same
database and Redis as the web app, so what they change takes effect at once.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from flask.cli import AppGroup
from marshmallow import ValidationError

from . import account_data, sessions, webhook_store
from .audit import EVENTS
from .codes import email_tag
from .mail_check import diagnose, mail_settings, send_test_email
from .roles import ROLE_NAME, is_valid_role_name
from .schemas import NormalisedEmail
from .settings import settings
from .state import current_state, user_store
from .users import iso

users_cli = AppGroup("users", help="Manage user accounts, roles and sessions.")
mail_cli = AppGroup("mail", help="Check the outgoing mail settings.")
audit_cli = AppGroup("audit", help="Read, export and prune the audit log; dead webhooks.")


def normalised_email(value: str) -> str:
    try:
        return str(NormalisedEmail().deserialize(value))
    except ValidationError as error:
        raise click.BadParameter("; ".join(map(str, error.messages)), param_hint="EMAIL") from None


def role_name(value: str) -> str:
    if not is_valid_role_name(value):
        raise click.BadParameter(f"must match {ROLE_NAME.pattern}", param_hint="ROLE")
    return value


def check_role(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """Click callback: one role name, several, or none."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return [role_name(v) for v in value]
    return role_name(value)


def get_user(email: str) -> Any:
    address = normalised_email(email)
    user = user_store().find(address)
    if user is None:
        raise click.ClickException(f"No user with email {address}.")
    return user


def describe(user: Any) -> str:
    state = "active" if user.is_active else "inactive"
    roles = ",".join(user.roles) or "-"
    last = iso(user.last_login_at) or "-"
    return f"{user.id:>6}  {user.email:<40}  {state:<8}  {roles:<20}  {last}"


@users_cli.command("list")
@click.option("--role", callback=check_role, help="Only users holding this role.")
@click.option("--inactive/--active", default=None, help="Only inactive (or only active) users.")
def list_users(role: str | None, inactive: bool | None) -> None:
    """List users: id, email, state, roles, last sign-in."""
    active = None if inactive is None else not inactive
    users = [u for u in user_store().all(active=active) if role is None or role in u.roles]
    click.echo(f"{'id':>6}  {'email':<40}  {'state':<8}  {'roles':<20}  last sign-in")
    for user in users:
        click.echo(describe(user))
    click.echo(f"{len(users)} user(s)")


@users_cli.command("show")
@click.argument("email")
def show_user(email: str) -> None:
    """Show one user's account, roles and number of live sessions."""
    user = get_user(email)
    click.echo(f"id:            {user.id}")
    click.echo(f"email:         {user.email}")
    click.echo(f"active:        {'yes' if user.is_active else 'no'}")
    click.echo(f"roles:         {', '.join(user.roles) or '-'}")
    click.echo(f"created:       {iso(user.created_at)}")
    click.echo(f"last sign-in:  {iso(user.last_login_at) or '-'}")
    click.echo(f"live sessions: {len(sessions.list_sessions(str(user.id)))}")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", "roles", multiple=True, callback=check_role,
              help="Grant this role (repeatable).")
@click.option("--inactive", is_flag=True, help="Create the account deactivated.")
def create_user(email: str, roles: list[str], inactive: bool) -> None:
    """Create an account (for invite-only deployments, OTP_ALLOW_SIGNUP=false)."""
    address = normalised_email(email)
    store = user_store()
    if store.exists(address):
        raise click.ClickException(f"A user with email {address} already exists.")
    user = store.create(address, active=not inactive, roles=roles)
    click.echo(f"Created user {user.id} <{user.email}>.")


@users_cli.command("deactivate")
@click.argument("email")
def deactivate_user(email: str) -> None:
    """Refuse the user's future sign-ins and end every session they have."""
    user = get_user(email)
    user.is_active = False
    user_store().save(user)
    ended = sessions.end_all_sessions(str(user.id), reason="deactivated")
    click.echo(f"Deactivated {user.email}; ended {ended} session(s).")


@users_cli.command("activate")
@click.argument("email")
def activate_user(email: str) -> None:
    """Let a deactivated user sign in again."""
    user = get_user(email)
    user.is_active = True
    user_store().save(user)
    click.echo(f"Activated {user.email}.")


@users_cli.command("grant-role")
@click.argument("email")
@click.argument("role", callback=check_role)
def grant_role(email: str, role: str) -> None:
    """Give the user ROLE (it reaches their tokens at the next refresh)."""
    user = get_user(email)
    if not user.grant_role(role):
        click.echo(f"{user.email} already has role {role}.")
        return
    user_store().save(user)
    click.echo(f"Granted {role} to {user.email}; it applies from their next token refresh.")


@users_cli.command("revoke-role")
@click.argument("email")
@click.argument("role", callback=check_role)
@click.option("--end-sessions", is_flag=True,
              help="Also end the user's sessions, so the role is gone at once.")
def revoke_role(email: str, role: str, end_sessions: bool) -> None:
    """Take ROLE from the user (gone at the next refresh, or at once with --end-sessions)."""
    user = get_user(email)
    if not user.revoke_role(role):
        click.echo(f"{user.email} does not have role {role}.")
        return
    user_store().save(user)
    click.echo(f"Revoked {role} from {user.email}.")
    if end_sessions:
        ended = sessions.end_all_sessions(str(user.id), reason="admin")
        click.echo(f"Ended {ended} session(s).")
    else:
        click.echo("Tokens already issued keep it until their next refresh "
                   "(use --end-sessions to apply it now).")


@users_cli.command("sessions")
@click.argument("email")
def user_sessions(email: str) -> None:
    """List the user's live sessions: id, created, last used, IP, user agent."""
    user = get_user(email)
    live = sessions.list_sessions(str(user.id))
    for info in live:
        click.echo(
            f"{info.id}  created {info.created_at}  last used {info.last_used_at}  "
            f"{info.ip or '-'}  {info.user_agent or '-'}"
        )
    click.echo(f"{len(live)} live session(s) for {user.email}")


@users_cli.command("logout-all")
@click.argument("email")
def logout_all(email: str) -> None:
    """End every session of the user now; their tokens stop working at the next request."""
    user = get_user(email)
    ended = sessions.end_all_sessions(str(user.id), reason="admin")
    click.echo(f"Ended {ended} session(s) of {user.email}.")


@users_cli.command("export")
@click.argument("email")
@click.option("--output", "-o", type=click.File("w"), default="-",
              help="Write the JSON here (default: standard output).")
def export_user(email: str, output: Any) -> None:
    """Export everything stored about the user as JSON (account, sessions, passkeys, audit)."""
    user = get_user(email)
    json.dump(account_data.export_account(user.id), output, indent=2, sort_keys=True)
    output.write("\n")


@users_cli.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user(email: str, yes: bool) -> None:
    """Delete the account: its row, passkeys, sessions and Redis state. Its audit events
    are kept, pseudonymised, until `flask audit prune`."""
    user = get_user(email)
    if not yes:
        click.confirm(f"Delete {user.email} (id {user.id}) and everything stored about it?",
                      abort=True)
    account_data.delete_account(user.id, by="operator")
    current_state().audit.flush()
    click.echo(f"Deleted {user.email} (id {user.id}); its audit events are pseudonymised.")


@mail_cli.command("send-test")
@click.argument("email")
def send_test(email: str) -> None:
    """Send a test message to EMAIL with the configured SMTP settings; diagnose failures."""
    address = normalised_email(email)
    settings = mail_settings()
    click.echo(
        f"Sending a test message to {address} through {settings['MAIL_SERVER']}:"
        f"{settings['MAIL_PORT']} (STARTTLS: {'on' if settings['MAIL_USE_TLS'] else 'off'}, "
        f"SSL: {'on' if settings['MAIL_USE_SSL'] else 'off'}, "
        f"login: {settings['MAIL_USERNAME'] or 'none'})..."
    )
    try:
        send_test_email(address)
    except Exception as error:  # every failure gets a diagnosis, not a traceback
        raise click.ClickException(diagnose(error, settings)) from None
    click.echo(f"Sent: the server accepted the message. Check the inbox of {address}.")


AGE = re.compile(r"^(\d+)([mhd])$")


def moment(value: str | None, option: str) -> datetime | None:
    """`30m`, `12h`, `7d` (that long ago) or an ISO 8601 date or time (UTC unless given)."""
    if value is None:
        return None
    if match := AGE.match(value):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return datetime.now(UTC) - timedelta(**{unit: int(match[1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "use an age (30m, 12h, 7d) or an ISO 8601 date (2026-11-30T08:00)", param_hint=option
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def event_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None or value in EVENTS or (
        value.endswith(".*") and any(e.startswith(value[:-1]) for e in EVENTS)
    ):
        return value
    raise click.BadParameter(f"one of {', '.join(EVENTS)} (or a family: session.*)")


def audit_filters(function: Any) -> Any:
    for option in reversed((
        click.option("--user", "user", help="Events of this account (email or id)."),
        click.option("--event", callback=event_name, help="This event (or a family: code.*)."),
        click.option("--since", help="From this moment: 7d, 12h, 30m or an ISO date."),
        click.option("--until", help="Before this moment: same forms as --since."),
    )):
        function = option(function)
    return function


def find_events(user: str | None, event: str | None, since: str | None, until: str | None,
                limit: int | None) -> list[Any]:
    state = current_state()
    state.audit.flush()
    user_id = tag = None
    if user is not None:
        if user.isdigit():
            user_id = int(user)
        else:
            address = normalised_email(user)
            found = user_store().find(address)
            user_id, tag = (found.id if found else None), email_tag(address)
    return state.audit.store.events(
        user_id=user_id, email_tag=tag, event=event,
        since=moment(since, "--since"), until=moment(until, "--until"), limit=limit,
    )


@audit_cli.command("list")
@audit_filters
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
def list_events(user: str | None, event: str | None, since: str | None, until: str | None,
                limit: int) -> None:
    """List audit events, newest first: time, event, user, IP, request id, detail."""
    events = find_events(user, event, since, until, limit)
    for item in events:
        who = item.user_id if item.user_id is not None else (item.email_tag or "-")
        detail = json.dumps(dict(item.detail), sort_keys=True) if item.detail else ""
        click.echo(f"{item.at.isoformat(timespec='seconds')}  {item.event:<22}  {who!s:<18}  "
                   f"{item.ip or '-':<15}  {item.request_id or '-'}  {detail}")
    click.echo(f"{len(events)} event(s)")


@audit_cli.command("export")
@audit_filters
@click.option("--format", "format_", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("--output", "-o", type=click.File("w"), default="-",
              help="Write here (default: standard output).")
def export_events(user: str | None, event: str | None, since: str | None, until: str | None,
                  format_: str, output: Any) -> None:
    """Export every matching event, oldest first, as JSON lines or CSV."""
    events = list(reversed(find_events(user, event, since, until, None)))
    rows = [item.to_dict() for item in events]
    if format_ == "jsonl":
        for row in rows:
            output.write(json.dumps(row, sort_keys=True) + "\n")
    else:
        fields = ["id", "at", "event", "user_id", "email_tag", "ip", "user_agent",
                  "request_id", "detail"]
        writer = csv.DictWriter(output, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "detail": json.dumps(row["detail"], sort_keys=True)})
    if output is not sys.stdout:
        click.echo(f"{len(rows)} event(s) exported", err=True)


@audit_cli.command("prune")
@click.option("--older-than-days", type=click.IntRange(min=0), default=None,
              help="Default: OTP_AUDIT_RETENTION_DAYS.")
def prune_events(older_than_days: int | None) -> None:
    """Delete events older than the retention period (run it daily, e.g. from cron)."""
    days = settings.audit_retention_days if older_than_days is None else older_than_days
    deleted = current_state().audit.store.prune(datetime.now(UTC) - timedelta(days=days))
    click.echo(f"Deleted {deleted} event(s) older than {days} day(s).")


@audit_cli.command("webhooks")
@click.option("--limit", default=20, show_default=True,
              help="Show at most this many dead letters, newest first.")
@click.option("--clear", is_flag=True, help="Forget every dead letter and reset the count.")
def dead_webhooks(limit: int, clear: bool) -> None:
    """Webhooks that failed every attempt: their count, and the most recent ones."""
    if clear:
        webhook_store.clear_dead_letters()
        click.echo("Dead webhooks cleared.")
        return
    count, records = webhook_store.dead_letters(limit)
    for record in records:
        click.echo(f"{record['at']}  {record['id']}  {record['type']:<22}  {record['url']}  "
                   f"{record['attempts']} attempt(s), last: {record['error'] or record['status']}")
    click.echo(f"{count} dead webhook(s) in all "
               f"(the {webhook_store.DEAD_LETTERS_KEPT} most recent are kept)")
