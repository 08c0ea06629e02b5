"""The `inboxd` command line (typer): the daemon, config checks and the queue.

Every mistake a person can make here (a typo, an unknown ticket, a broken
config) ends as one line on stderr and a non-zero exit, never a traceback:
`main()` runs the typer app without click's standalone handling and turns
each known error into that line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from inboxd import tickets as ticketq
from inboxd.config import ConfigError, Settings, find_config_path, load_settings

app = typer.Typer(
    name="inboxd", help="A shared-inbox helpdesk that lives inside your IMAP mailboxes.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True,
)
quarantine_app = typer.Typer(help="Mail that could not be filed, with the reason.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")
outbox_app = typer.Typer(help="Outgoing mail: what waits, what failed and why.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")

log = logging.getLogger("inboxd.cli")


class UserError(Exception):
    """A mistake to report in one line (exit status 1)."""


@dataclass
class Context:
    config: Optional[Path]
    acting: Optional[str]
    _settings: Optional[Settings] = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(find_config_path(self.config))
        return self._settings


def _ctx(ctx: typer.Context) -> Context:
    return ctx.find_root().obj


def setup_logging(settings: Settings | None, level: str | None = None) -> None:
    level = (level or (settings.log.level if settings else "warning")).upper()
    handler: logging.Handler
    if settings is not None and settings.log.file is not None:
        handler = logging.FileHandler(settings.log.file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # imapclient logs protocol lines at debug level; it redacts LOGIN, but
    # mail content has no business in our logs either.
    logging.getLogger("imapclient").setLevel(max(logging.INFO, root.level))


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _store(settings: Settings):
    from inboxd.db import open_store

    return open_store(settings.store.url)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="Path of inboxd.toml (else $INBOXD_CONFIG, else ./inboxd.toml)."),
    acting: Optional[str] = typer.Option(None, "--as", envvar="INBOXD_AGENT", help="The agent you act as."),
) -> None:
    ctx.obj = Context(config, acting)


@app.command()
def run(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="One full cycle, then exit (exit 1 if a mailbox failed)."),
    workers: int = typer.Option(1, "--workers", min=0, help="Parser processes (0 parses in the daemon itself)."),
) -> None:
    """Run the daemon: sync every mailbox (IDLE where possible) until SIGTERM."""
    from inboxd import daemon

    settings = _ctx(ctx).settings
    setup_logging(settings)
    if once:
        report = daemon.run_once(settings, workers=workers)
        for name in report.failed:
            typer.echo(f"inboxd: mailbox {name} failed: {report.statuses[name].error}", err=True)
        raise typer.Exit(1 if report.failed else 0)
    daemon.run_forever(settings, workers=workers)


@app.command("check-config")
def check_config(ctx: typer.Context, connect: bool = typer.Option(False, "--connect", help="Also log in to every IMAP and SMTP server.")) -> None:
    """Validate inboxd.toml (and with --connect, every server login)."""
    from inboxd.config import check_files

    settings = _ctx(ctx).settings
    problems = check_files(settings)
    for problem in problems:
        typer.echo(f"inboxd: {problem}", err=True)
    typer.echo(f"{settings.path}: {len(settings.mailboxes)} mailbox(es), {len(settings.agents)} agent(s)")
    failed = bool(problems)
    if connect:
        from inboxd import imap, sender

        for mb in settings.mailboxes:
            failed |= not _report(f"imap {mb.name} ({mb.imap.host}:{mb.imap.port})", lambda mb=mb: imap.check_login(mb.imap))
        servers = {}
        for mb in settings.mailboxes:
            smtp = settings.smtp_for(mb)
            if smtp is not None:
                servers.setdefault((smtp.host, smtp.port, smtp.username), (mb.name, smtp))
        for (host, port, _user), (name, smtp) in servers.items():
            failed |= not _report(f"smtp {name} ({host}:{port})", lambda smtp=smtp: sender.check_login(smtp))
    if failed:
        raise typer.Exit(1)


def _report(label: str, check) -> bool:
    try:
        typer.echo(f"ok     {label}: {check()}")
        return True
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(f"FAILED {label}: {type(exc).__name__}{': ' + text if text else ''}")
        return False


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: list[str] = typer.Option([], "--status", help="new, open, pending, solved or closed (repeatable)."),
    mailbox: Optional[str] = typer.Option(None, "--mailbox"),
    assignee: Optional[str] = typer.Option(None, "--assignee"),
    mine: bool = typer.Option(False, "--mine", help="Tickets assigned to the acting agent."),
    unassigned: bool = typer.Option(False, "--unassigned"),
    tag: list[str] = typer.Option([], "--tag", help="Only tickets with this tag (repeatable)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print JSON as in the interface contract."),
) -> None:
    """List tickets, newest activity first."""
    from inboxd.db import reading
    from inboxd.models import STATUSES

    state = _ctx(ctx)
    settings = state.settings
    for s in status:
        if s not in STATUSES:
            raise UserError(f"unknown status {s!r}; use one of {', '.join(STATUSES)}")
    if mailbox is not None and mailbox not in {m.name for m in settings.mailboxes}:
        raise UserError(f"unknown mailbox {mailbox!r}")
    if mine:
        if not state.acting:
            raise UserError("--mine needs an agent: pass --as AGENT or set $INBOXD_AGENT")
        assignee = state.acting
    flt = ticketq.ListFilter(tuple(status), mailbox, assignee, unassigned, tuple(tag), limit)
    with reading(_store(settings)) as conn:
        rows = ticketq.list_tickets(conn, flt)
    if as_json:
        _print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("ID", "STATUS", "PRI", "MAILBOX", "REQUESTER", "ASSIGNEE", "MSGS", "UPDATED", "SUBJECT"):
        table.add_column(col, no_wrap=col != "SUBJECT", overflow="ellipsis")
    for t in rows:
        table.add_row(t["id"], t["status"], t["priority"], ",".join(t["mailboxes"]), t["requester"],
                      t["assignee"] or "-", str(t["message_count"]), t["updated_at"][:16].replace("T", " "),
                      t["subject"])
    Console(width=max(120, _terminal_width())).print(table)
    typer.echo(f"{len(rows)} ticket(s)")


@app.command()
def show(
    ctx: typer.Context,
    ticket_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one ticket with its thread and history."""
    from inboxd.db import reading

    with reading(_store(_ctx(ctx).settings)) as conn:
        try:
            t = ticketq.show_ticket(conn, ticket_id)
        except ticketq.NotFound as exc:
            raise UserError(str(exc)) from None
    if as_json:
        _print_json(t)
        return
    out = [
        f"{t['id']}  {t['subject']}",
        f"status {t['status']}  priority {t['priority']}  assignee {t['assignee'] or '-'}  "
        f"tags {', '.join(t['tags']) or '-'}",
        f"requester {t['requester_name']} <{t['requester']}>  mailboxes {', '.join(t['mailboxes'])}",
        f"created {t['created_at']}  updated {t['updated_at']}  first response {t['first_response_at'] or '-'}",
    ]
    for m in t["messages"]:
        out += ["", f"--- {m['date']}  {m['direction']}/{m['kind']}  {m['from']}  [{', '.join(m['mailboxes'])}]",
                f"Subject: {m['subject']}", "", m["reply_text"].rstrip()]
        folded = len(m["text"].strip()) - len(m["reply_text"].strip())
        if folded > 0:
            out.append(f"[... {folded} characters of quoted text folded; see --json]")
    out += ["", "History:"]
    out += [f"  {e['at']}  {e['actor']}  {e['action']}  {_detail(e['detail'])}" for e in t["events"]]
    typer.echo("\n".join(out))


def _detail(detail: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


@quarantine_app.command("list")
def quarantine_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Mail that could not be filed: where it was, why, and its raw bytes' hash."""
    from inboxd.db import reading

    with reading(_store(_ctx(ctx).settings)) as conn:
        rows = ticketq.list_quarantine(conn)
    if as_json:
        _print_json(rows)
        return
    for q in rows:
        typer.echo(f"{q['id']:>5}  {q['at']}  {q['mailbox']}/{q['folder']} uid {q['uid']}  "
                   f"<{q['message_id'] or ''}>  {q['reason']}")
    typer.echo(f"{len(rows)} quarantined message(s)")


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    status: list[str] = typer.Option([], "--status", help="queued, sending, sent or failed (repeatable); default: all but sent."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Outgoing mail that is waiting or failed (and with --status sent, what went out)."""
    from inboxd.db import reading
    from inboxd.models import OUTBOX_STATUSES

    for s in status:
        if s not in OUTBOX_STATUSES:
            raise UserError(f"unknown outbox status {s!r}; use one of {', '.join(OUTBOX_STATUSES)}")
    with reading(_store(_ctx(ctx).settings)) as conn:
        rows = ticketq.list_outbox(conn, tuple(status) or ("queued", "sending", "failed"))
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['id']:>5}  {r['status']:<7}  {r['kind']:<12}  {r['ticket'] or '-':<8}  "
                   f"{', '.join(r['to'])}  attempts {r['attempts']}  {r['last_error']}")
    typer.echo(f"{len(rows)} outgoing message(s)")


@outbox_app.command("retry")
def outbox_retry(ctx: typer.Context, outbox_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Send a failed or waiting mail again at the next chance (restarts its give-up clock)."""
    from inboxd.sender import retry
    from inboxd.store import utcnow

    if not retry(_store(_ctx(ctx).settings), outbox_id, utcnow()):
        raise UserError(f"no failed or waiting outgoing message {outbox_id}")
    typer.echo(f"outbox {outbox_id} queued for sending")


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 160


def main(argv: list[str] | None = None) -> None:
    # Everything inboxd writes (store, raw mail, attachments, logs) is private.
    os.umask(0o077)
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="inboxd", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # Usage errors (a typo in a command or option) from typer's parser.
        if exc.format_message():
            sys.stderr.write(f"inboxd: {exc.format_message()}\n")
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("inboxd: aborted\n")
        sys.exit(130)
    except (ConfigError, UserError) as exc:
        sys.stderr.write(f"inboxd: {exc}\n")
        sys.exit(1 if isinstance(exc, UserError) else 2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # A bug: still one line; the traceback only at debug level.
        logging.getLogger("inboxd").debug("internal error", exc_info=True)
        sys.stderr.write(f"inboxd: internal error: {type(exc).__name__}: {exc}\n")
        sys.exit(70)
    sys.exit(rv if isinstance(rv, int) else 0)
