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
from typing import TYPE_CHECKING, Optional

import typer

from inboxd.configpath import ConfigError, find_config_path

if TYPE_CHECKING:
    from inboxd.config import Settings

# Help is click's plain text, not rich's boxes: rendering it with rich costs more than the 0.15 s an
# agent's `inboxd --help` may take (bench/cli.py).  Every sub-app passes the same.
PLAIN_HELP = None
app = typer.Typer(
    name="inboxd", help="A shared-inbox helpdesk that lives inside your IMAP mailboxes.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True, rich_markup_mode=PLAIN_HELP,
)
quarantine_app = typer.Typer(help="Mail that could not be filed, with the reason.", no_args_is_help=True,
                             rich_markup_mode=PLAIN_HELP)
app.add_typer(quarantine_app, name="quarantine")
outbox_app = typer.Typer(help="Outgoing mail: what waits, what failed and why.", no_args_is_help=True,
                         rich_markup_mode=PLAIN_HELP)
app.add_typer(outbox_app, name="outbox")

log = logging.getLogger("inboxd.cli.main")


class UserError(Exception):
    """A mistake to report in one line (exit status 1)."""


@dataclass
class Context:
    config: Optional[Path]
    acting: Optional[str]
    _settings: Optional[Settings] = None
    _direct: Optional[bool] = None
    _reader: Optional[dict] = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from inboxd.config import load_settings

            self._settings = load_settings(find_config_path(self.config))
        return self._settings

    @property
    def direct(self) -> bool:
        """Whether this command runs against the store itself (the store's owner) or through the daemon's API."""
        if self._direct is None:
            self._direct = runs_directly(self.config)
        return self._direct

    def require_owner(self, command: str) -> None:
        """`run`, `migrate-store`, `backup`, `restore`, `audit` and `check-config` open the store or the
        mailboxes themselves: they are for the store's owner (the service user, or root)."""
        if os.geteuid() == 0:
            return
        path = find_config_path(self.config)
        owner = store_owner(path)
        if owner is not None and owner != os.geteuid():
            raise UserError(f"`inboxd {command}` is for the store's owner ({_user_name(owner)}), who runs the"
                            " daemon; agents use the commands that go through its API")

    def agent(self):
        """The acting agent when running directly: --as, else $INBOXD_AGENT, else the agent whose login is $USER."""
        name = self.acting
        if not name:
            user = os.environ.get("USER", "")
            agent = self.settings.agent_by_login(user) if user else None
            name = agent.name if agent is not None else None
        if not name:
            raise UserError("who is acting? pass --as AGENT or set $INBOXD_AGENT")
        agent = self.settings.agent(name)
        if agent is None:
            raise UserError(f"unknown agent {name!r}; known agents: {', '.join(a.name for a in self.settings.agents)}")
        return agent

    def call(self, op: str, **params):
        """Run one API operation (inboxd.api.routes): in-process for the store's owner, else on the daemon."""
        if self.direct:
            return self._call_directly(op, params)
        from inboxd.api.client import ClientError, call, find_target

        try:
            return call(find_target(self._config_path()), op, params, acting=self.acting)
        except ClientError as exc:
            raise UserError(str(exc)) from None

    def _config_path(self) -> Path | None:
        try:
            return find_config_path(self.config)
        except ConfigError:
            return None

    def _call_directly(self, op: str, params: dict):
        from inboxd.api.handlers import ApiError, Text, handle
        from inboxd.api.identity import for_owner
        from inboxd.api.routes import OPS

        settings = self.settings
        user = _user_name(os.geteuid())
        write = OPS[op].method != "GET"
        try:
            agent = self.agent()
        except UserError:
            # Changes to tickets, reports, exports and tokens name who acts; the owner's reads and their
            # operations on the queues (retrying a quarantined or outgoing mail) need nobody.
            if (write and op not in ("quarantine_retry", "outbox_retry")) or op in ("report", "export", "token_list"):
                raise
            # The owner reads the store as it is (they can open its file anyway): as an admin who is nobody.
            from inboxd.config import AgentSettings

            agent = AgentSettings(name=user, email="", role="admin")
        caller = for_owner(settings, user, agent, acting=bool(self.acting))
        try:
            out = handle(op, params, caller, settings=settings, engine=_store(settings, create=write), now=_now())
        except ApiError as exc:
            raise UserError(str(exc)) from None
        # What the client would read off the wire: a text answer is its text.
        return out.body if isinstance(out, Text) else out

    def reader(self) -> dict:
        """Who reads the output: their zone, language and the agents' display names (`me` of the API)."""
        if self._reader is None:
            if self.direct:
                try:
                    agent = self.agent()
                except UserError:
                    agent = None
                settings = self.settings
                self._reader = {"zone": settings.policies.agent_zone(agent),
                                "language": agent.language if agent is not None else "en",
                                "agent": agent.name if agent is not None else None,
                                "agents": {a.name: a.display_name for a in settings.agents}}
            else:
                from zoneinfo import ZoneInfo

                me = self.call("me")
                self._reader = {"zone": ZoneInfo(me["timezone"]), "language": me["language"], "agent": me["agent"],
                                "agents": me["agents"]}
        return self._reader


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def store_owner(config: Path) -> int | None:
    """The Unix user who owns the store: of its SQLite file (or folder, before it exists); for PostgreSQL,
    of `[store] data_dir` (the daemon's private files), else of the config.

    None when the config cannot be read here (then load_settings says why).
    """
    from inboxd.configpath import SQLITE_URL, raw_config

    data = raw_config(config)
    if data is None:
        return None
    store = data.get("store")
    url = store.get("url", "sqlite:///inboxd.db") if isinstance(store, dict) else "sqlite:///inboxd.db"
    match = SQLITE_URL.fullmatch(url) if isinstance(url, str) else None
    path = config
    if match and match[2] not in ("", ":memory:"):
        path = config.parent / match[2]
        if not path.exists():
            path = path.parent
    elif not match:
        # A database server decides who connects; on this machine the daemon's files (raw mail,
        # attachments) are in data_dir, private to the service user, who is therefore the owner.
        data_dir = store.get("data_dir", "var") if isinstance(store, dict) else "var"
        if isinstance(data_dir, str) and (config.parent / data_dir).exists():
            path = config.parent / data_dir
    try:
        return path.stat().st_uid
    except OSError:
        return None


def runs_directly(config: Optional[Path]) -> bool:
    """Root and the store's owner run commands against the store; everyone else (and anyone who sets
    $INBOXD_URL) goes through the daemon's API, which knows who they are."""
    if os.environ.get("INBOXD_URL"):
        return False
    if os.geteuid() == 0:
        return True
    try:
        path = find_config_path(config)
    except ConfigError:
        return False
    if not os.access(path, os.R_OK):
        return False
    owner = store_owner(path)
    return owner is None or owner == os.geteuid()


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
    # Their routine INFO lines (every job run, every migration step) are noise
    # in an operator's log; their warnings still show.
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _print_json(data) -> None:
    if isinstance(data, list):
        # One compact object per line: still one JSON array, easy to grep, and
        # json's C encoder (which indent= turns off) prints 100,000 tickets fast.
        lines = ",\n".join(map(json.JSONEncoder(ensure_ascii=False).encode, data))
        sys.stdout.write(f"[\n{lines}\n]\n" if data else "[]\n")
        return
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _store(settings: Settings, *, create: bool = True):
    """The store's engine.  Commands that only read pass create=False: a store
    that does not exist is then a one-line error, not a new empty database."""
    from inboxd.store.engine import NoStore, open_store

    try:
        return open_store(settings.store.url, create=create)
    except NoStore as exc:
        raise UserError(f"{settings.path.name}: store.url: no store at {exc.path};"
                        " run `inboxd run` first, or check the path") from None


def _version(value: bool) -> None:
    if not value:
        return
    # The installed distribution's version; a source checkout that was never
    # installed has only the package's own.
    from importlib import metadata

    try:
        version = metadata.version("inboxd")
    except metadata.PackageNotFoundError:
        from inboxd import __version__ as version
    typer.echo(f"inboxd {version}")
    raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="Path of inboxd.toml (else $INBOXD_CONFIG, else ./inboxd.toml)."),
    acting: Optional[str] = typer.Option(None, "--as", envvar="INBOXD_AGENT", help="The agent you act as."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print inboxd's version and exit."),
) -> None:
    ctx.obj = Context(config, acting)


@app.command()
def run(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="One full cycle, then exit (exit 1 if a mailbox failed)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Sync into a throw-away copy of the store and print what "
                                 "a real run would do per folder; nothing is written, sent or appended."),
    workers: int = typer.Option(1, "--workers", min=0, help="Parser processes (0 parses in the daemon itself)."),
) -> None:
    """Run the daemon: sync every mailbox (IDLE where possible) until SIGTERM."""
    from inboxd import daemon
    from inboxd.cli.ops import print_cycle, sync_progress

    _ctx(ctx).require_owner("run")
    settings = _ctx(ctx).settings
    setup_logging(settings)
    if once or dry_run:
        with sync_progress() as progress:
            report = daemon.run_once(settings, workers=workers, progress=progress, dry_run=dry_run)
        if dry_run:
            print_cycle(report, settings)
        for name in report.failed:
            typer.echo(f"inboxd: mailbox {name} failed: {report.statuses[name].error}", err=True)
        for name, st in report.statuses.items():
            for warning in st.warnings:
                typer.echo(f"inboxd: warning: mailbox {name}: {warning}", err=True)
        raise typer.Exit(1 if report.failed else 0)
    from inboxd.sync.progress import LogProgress

    daemon.run_forever(settings, workers=workers, progress=LogProgress())


@app.command("check-config")
def check_config(ctx: typer.Context, connect: bool = typer.Option(False, "--connect", help="Also log in to every IMAP and SMTP server and connect to the store.")) -> None:
    """Validate inboxd.toml (and with --connect, every server login and the store)."""
    from inboxd.config import check_files
    from inboxd.outbound.template_check import check_templates

    # Loading the settings has checked calendars, SLAs, rules, teams, the
    # scheduler, surveys and macros with everything else.
    _ctx(ctx).require_owner("check-config")
    settings = _ctx(ctx).settings
    # Every template the config uses, rendered once with sample values.
    problems = check_files(settings) + check_templates(settings)
    for problem in problems:
        typer.echo(f"inboxd: {problem}", err=True)
    typer.echo(f"{settings.path}: {len(settings.mailboxes)} mailbox(es), {len(settings.agents)} agent(s), "
               f"{len(settings.policies.sla)} SLA polic(ies), {len(settings.policies.rules.rules)} rule(s)")
    failed = bool(problems)
    if connect:
        from sqlalchemy.engine import make_url

        from inboxd.sync import imap

        from inboxd.outbound import sender
        from inboxd.store.engine import describe_store

        store = make_url(settings.store.url).render_as_string(hide_password=True)
        failed |= not _report(f"store ({store})", lambda: describe_store(settings.store.url))
        for mb in settings.mailboxes:
            conf = mb.imap.oauth or (mb.smtp.oauth if mb.smtp is not None else None)
            if conf is not None:
                from inboxd import oauth

                # Whose token it is and when the access token runs out (refreshed first when near its end).
                failed |= not _report(f"oauth2 {mb.name}", lambda conf=conf: oauth.describe(conf))
            failed |= not _report(f"imap {mb.name} ({mb.imap.host}:{mb.imap.port})", lambda mb=mb: imap.check_login(
                mb.imap, mb.imap.folders + ((mb.imap.sent_folder,) if mb.imap.sent_folder else ())))
        servers = {}
        for mb in settings.mailboxes:
            smtp = settings.smtp_for(mb)
            if smtp is not None:
                servers.setdefault((smtp.host, smtp.port, smtp.username), (mb.name, smtp))
        for (host, port, _user), (name, smtp) in servers.items():
            failed |= not _report(f"smtp {name} ({host}:{port})", lambda smtp=smtp: sender.check_login(smtp))
    if failed:
        raise typer.Exit(1)


@app.command("migrate-store")
def migrate_store(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(None, "--from", metavar="URL",
                                         help="The store to copy (default: the config's store.url)."),
    target: str = typer.Option(..., "--to", metavar="URL",
                               help="An empty database to copy it into, e.g. postgresql+psycopg://inboxd@db/inboxd;"
                                    " its schema is created."),
) -> None:
    """Copy every row of one store into another, empty one (SQLite to PostgreSQL, or back).

    Stop every daemon first.  The copy is one transaction on the target and
    is checked afterwards (row counts, and checksums of tickets, messages,
    events and raw mail); then point store.url at the new store.
    """
    from datetime import UTC, datetime

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from inboxd.store.engine import NoStore, open_store
    from inboxd.store.copy import CopyError, copy_rows

    if source is None:
        _ctx(ctx).require_owner("migrate-store")
    source = source or _ctx(ctx).settings.store.url
    shown = {}
    for role, url in (("--from", source), ("--to", target)):
        try:
            parsed = make_url(url)
            parsed.get_dialect().import_dbapi()
        except (ArgumentError, NoSuchModuleError) as exc:
            raise UserError(f"{role}: not a database URL inboxd can use: {' '.join(str(exc).split())}") from None
        except ImportError as exc:
            raise UserError(f"{role}: the {parsed.get_backend_name()} driver is not installed ({exc});"
                            " install inboxd with its `postgres` extra") from None
        shown[role] = parsed.render_as_string(hide_password=True)
    if make_url(source) == make_url(target):
        raise UserError("--from and --to are the same store")
    engines = []
    try:
        try:
            engines.append(open_store(source, create=False))
        except NoStore as exc:
            raise UserError(f"--from: no store at {exc.path}") from None
        engines.append(open_store(target))
        typer.echo(f"copying {shown['--from']} to {shown['--to']}")
        report = copy_rows(*engines, datetime.now(UTC),
                           progress=lambda table, rows: typer.echo(f"  {table:<14}{rows:>10} row(s)"))
    except CopyError as exc:
        raise UserError(str(exc)) from None
    except DBAPIError as exc:
        # A refused connection, a missing database, a lost server: one line, not a traceback.
        text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        raise UserError(f"migrate-store: {text}") from None
    finally:
        for engine in engines:
            engine.dispose()
    rate = report.rows / report.seconds if report.seconds else float(report.rows)
    typer.echo(f"copied {report.rows} row(s) in {report.seconds:.1f} s ({rate:.0f} rows/s); every table's count and"
               f" the checksums of {', '.join(report.checksums)} are equal on both sides")
    typer.echo("point store.url at the new store before starting inboxd again")


def _report(label: str, check) -> bool:
    try:
        typer.echo(f"ok     {label}: {check()}")
        return True
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(f"FAILED {label}: {type(exc).__name__}{': ' + text if text else ''}")
        return False


def load_settings(path):
    from inboxd.config import load_settings as load

    return load(path)


def _completion_read(query):
    """`query(conn)` on the configured store, for shell completion: nothing on any error,
    and never a new store or a migration (completion must not write)."""
    try:
        from inboxd.store.engine import create_store_engine, reading

        engine = create_store_engine(load_settings(find_config_path(None)).store.url, create=False)
        try:
            with reading(engine) as conn:
                return query(conn)
        finally:
            engine.dispose()
    except Exception:
        return []


def _complete_ids(incomplete: str) -> list[str]:
    from inboxd.store.tickets import open_refs

    return _completion_read(lambda conn: open_refs(conn, incomplete))


def _complete_agents(incomplete: str) -> list[str]:
    try:
        return [a.name for a in load_settings(find_config_path(None)).agents if a.name.startswith(incomplete)]
    except Exception:
        return []


def _complete_macros(incomplete: str) -> list[str]:
    try:
        return [m for m in load_settings(find_config_path(None)).macros if m.startswith(incomplete)]
    except Exception:
        return []


def _complete_tags(incomplete: str) -> list[str]:
    from inboxd.store.tickets import tag_sets

    tags = {t for raw in _completion_read(tag_sets) for t in json.loads(raw)}
    return sorted(t for t in tags if t.startswith(incomplete))


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: list[str] = typer.Option([], "--status", help="new, open, pending, solved or closed (repeatable)."),
    mailbox: Optional[str] = typer.Option(None, "--mailbox"),
    assignee: Optional[str] = typer.Option(None, "--assignee", autocompletion=_complete_agents),
    mine: bool = typer.Option(False, "--mine", help="Tickets assigned to the acting agent."),
    unassigned: bool = typer.Option(False, "--unassigned"),
    tag: list[str] = typer.Option([], "--tag", help="Only tickets with this tag (repeatable).", autocompletion=_complete_tags),
    team: Optional[str] = typer.Option(None, "--team"),
    priority: list[str] = typer.Option([], "--priority", help="low, normal, high or urgent (repeatable)."),
    search: Optional[str] = typer.Option(None, "--search", help="Text in the subject or any message body."),
    overdue: bool = typer.Option(False, "--overdue", help="Only tickets with a broken SLA promise."),
    tier: Optional[int] = typer.Option(None, "--tier", min=0, help="Only tickets at this support tier (1, 2, 3)."),
    requester: Optional[str] = typer.Option(None, "--requester", metavar="EMAIL",
                                            help="Only this customer's tickets (any case)."),
    field: list[str] = typer.Option([], "--field", metavar="NAME=VALUE",
                                    help="Only tickets with this custom field value (repeatable)."),
    sort: str = typer.Option("updated", "--sort", help="updated, created, priority or id."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print JSON as in the interface contract."),
) -> None:
    """List tickets.  With no filters, your open work first, then the rest of the open queue."""
    state = _ctx(ctx)
    default_view = not (status or mailbox or assignee or unassigned or tag or team or priority or search or overdue
                        or as_json or requester or field or tier is not None or mine)
    mine_first = False
    if default_view:
        # The agent's day starts with their own open work, then the open queue.
        status = ["new", "open", "pending"]
        mine_first = state.reader()["agent"] is not None
    rows = state.call("list", status=list(status), mailbox=mailbox, assignee=assignee, mine=mine,
                      unassigned=unassigned, tag=list(tag), team=team, priority=list(priority), search=search,
                      overdue=overdue, tier=tier, requester=requester, field=list(field), sort=sort, limit=limit,
                      mine_first=mine_first)
    if as_json:
        _print_json(rows)
        return
    from inboxd.cli.tables import format_table

    zone, language = _reader(state)
    typer.echo(format_table(rows, now=_now(), zone=zone, language=language))
    typer.echo(f"{len(rows)} ticket(s)")


def _reader(state: Context):
    """The zone and language the acting agent reads times in (the machine's zone, English, when nobody is acting).

    `--json` never uses them: the contract's times stay ISO 8601 UTC.
    """
    reader = state.reader()
    return reader["zone"], reader["language"]


def _person(state: Context, name: str | None) -> str:
    """An agent as people read them: "小王 (xiaowang)" with a display name, else the handle; "-" for nobody."""
    if not name:
        return "-"
    display = state.reader()["agents"].get(name)
    return f"{display} ({name})" if display else name


def _now():
    # Not inboxd.sync.sink.utcnow: importing the store pulls in the whole ingest
    # path (and its holiday calendars), a third of a second per `list`.
    from datetime import UTC, datetime

    return datetime.now(UTC)


@app.command()
def show(
    ctx: typer.Context,
    ticket_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one ticket with its thread and history."""
    from inboxd.cli.tables import local_text
    from inboxd.localtime import zone_key, zone_label

    state = _ctx(ctx)
    t = state.call("show", id=ticket_id)
    if as_json:
        _print_json(t)
        return
    # Times in the acting agent's zone, written their language's way; --json keeps UTC.
    zone, language = _reader(state)

    def when(text: str | None) -> str:
        return local_text(text, zone, language, year=True) if text else "-"

    out = [
        f"{t['id']}  {t['subject']}",
        f"status {t['status']}  priority {t['priority']}  assignee {_person(state, t['assignee'])}  "
        f"tags {', '.join(t['tags']) or '-'}",
        f"requester {t['requester_name']} <{t['requester']}>  mailboxes {', '.join(t['mailboxes'])}",
        f"times in {zone_key(zone)} ({zone_label(_now(), zone, language)})",
        f"created {when(t['created_at'])}  updated {when(t['updated_at'])}  "
        f"first response {when(t['first_response_at'])}",
        f"due: first response {when(t['first_response_due'])}  resolution {when(t['resolution_due'])}"
        + (f"  (merged into {t['merged_into']})" if t["merged_into"] else ""),
    ]
    if t["fields"]:
        out.append("fields: " + "  ".join(f"{k}={v}" for k, v in t["fields"].items()))
    for m in t["messages"]:
        out += ["", f"--- {when(m['date'])}  {m['direction']}/{m['kind']}  {m['from']}  [{', '.join(m['mailboxes'])}]",
                f"Subject: {m['subject']}", "", m["reply_text"].rstrip()]
        folded = len(m["text"].strip()) - len(m["reply_text"].strip())
        if folded > 0:
            out.append(f"[... {folded} characters of quoted text folded; see --json]")
    out += ["", "History:"]
    out += [f"  {when(e['at'])}  {_person(state, e['actor'])}  {e['action']}  {_detail(e['detail'])}"
            for e in t["events"]]
    # Subjects, names and bodies come from customers' mail: no terminal
    # escape sequence may reach the agent's screen (see inboxd.cli.terminal).
    from inboxd.cli.terminal import printable

    typer.echo(printable("\n".join(out)))


def _detail(detail: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


@quarantine_app.command("list")
def quarantine_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Mail that could not be filed: where it was, why, and its raw bytes' hash."""
    rows = _ctx(ctx).call("quarantine_list")
    if as_json:
        _print_json(rows)
        return
    from inboxd.cli.terminal import printable

    for q in rows:
        # The Message-ID and the reason quote the quarantined mail itself.
        typer.echo(printable(f"{q['id']:>5}  {q['at']}  {q['mailbox']}/{q['folder']} uid {q['uid']}  "
                             f"<{q['message_id'] or ''}>  {q['reason']}"))
    typer.echo(f"{len(rows)} quarantined message(s)")


@outbox_app.command("list")
def outbox_list(
    ctx: typer.Context,
    status: list[str] = typer.Option([], "--status", help="queued, sending, sent or failed (repeatable); default: all but sent."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Outgoing mail that is waiting or failed (and with --status sent, what went out)."""
    rows = _ctx(ctx).call("outbox_list", status=list(status))
    if as_json:
        _print_json(rows)
        return
    from inboxd.cli.terminal import printable

    for r in rows:
        # The last error quotes the remote server's answer.
        typer.echo(printable(f"{r['id']:>5}  {r['status']:<7}  {r['kind']:<12}  {r['ticket'] or '-':<8}  "
                             f"{', '.join(r['to'])}  attempts {r['attempts']}  {r['last_error']}"))
    typer.echo(f"{len(rows)} outgoing message(s)")


@outbox_app.command("retry")
def outbox_retry(ctx: typer.Context, outbox_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Send a failed or waiting mail again at the next chance (restarts its give-up clock)."""
    _ctx(ctx).call("outbox_retry", oid=outbox_id)
    typer.echo(f"outbox {outbox_id} queued for sending")



TicketId = typer.Argument(..., metavar="ID", autocompletion=_complete_ids)
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON.")


def _done(result: dict, as_json: bool, text: str) -> None:
    if as_json:
        _print_json(result)
    else:
        typer.echo(text)


def _workflow_call(fn, *args, **kwargs) -> dict:
    from inboxd.outbound.templates import TemplateError
    from inboxd.desk.workflow import WorkflowError

    try:
        return fn(*args, **kwargs)
    except (WorkflowError, TemplateError, LookupError) as exc:
        raise UserError(str(exc).strip("'\"")) from None


@app.command()
def take(ctx: typer.Context, ticket_id: str = TicketId, as_json: bool = JsonOpt) -> None:
    """Assign an unassigned ticket to yourself."""
    r = _ctx(ctx).call("take", id=ticket_id)
    _done(r, as_json, f"{ticket_id} is now yours")


@app.command()
def assign(ctx: typer.Context, ticket_id: str = TicketId,
           agent: str = typer.Argument(..., metavar="AGENT", autocompletion=_complete_agents),
           as_json: bool = JsonOpt) -> None:
    """Assign a ticket to an agent."""
    r = _ctx(ctx).call("assign", id=ticket_id, agent=agent)
    _done(r, as_json, f"{ticket_id} assigned to {agent}")


@app.command()
def unassign(ctx: typer.Context, ticket_id: str = TicketId, as_json: bool = JsonOpt) -> None:
    """Put a ticket back in the unassigned queue."""
    r = _ctx(ctx).call("unassign", id=ticket_id)
    _done(r, as_json, f"{ticket_id} is unassigned")


@app.command()
def status(ctx: typer.Context,
           ticket_id: Optional[str] = typer.Argument(None, metavar="[ID]", autocompletion=_complete_ids),
           new_status: Optional[str] = typer.Argument(None, metavar="[STATUS]",
                                                      help="new, open, pending, solved or closed"),
           as_json: bool = JsonOpt) -> None:
    """Without arguments: the daemon's health per mailbox and folder.  With ID STATUS: move a
    ticket through its lifecycle (new → open → pending → solved → closed)."""
    if ticket_id is None:
        from inboxd.cli.ops import show_status

        show_status(_ctx(ctx), as_json)
        return
    if new_status is None:
        raise UserError("give a ticket ID and a STATUS, or nothing for the daemon's health")
    r = _ctx(ctx).call("set_status", id=ticket_id, status=new_status)
    _done(r, as_json, f"{ticket_id} is now {new_status}")


@app.command()
def close(ctx: typer.Context, ticket_id: str = TicketId,
          no_survey: bool = typer.Option(False, "--no-survey", help="Do not send a satisfaction survey."),
          as_json: bool = JsonOpt) -> None:
    """Close a ticket."""
    r = _ctx(ctx).call("close", id=ticket_id, survey=not no_survey)
    _done(r, as_json, f"{ticket_id} is closed")


@app.command()
def reopen(ctx: typer.Context, ticket_id: str = TicketId, as_json: bool = JsonOpt) -> None:
    """Reopen a solved or closed ticket."""
    r = _ctx(ctx).call("reopen", id=ticket_id)
    _done(r, as_json, f"{ticket_id} is open again")


@app.command()
def approve(ctx: typer.Context, ticket_id: str = TicketId, as_json: bool = JsonOpt) -> None:
    """Record a supervisor's review of an escalated ticket, so it can be closed."""
    r = _ctx(ctx).call("approve", id=ticket_id)
    _done(r, as_json, f"{ticket_id} approved")


@app.command()
def tag(ctx: typer.Context, ticket_id: str = TicketId,
        tags: list[str] = typer.Argument(..., metavar="TAG...", autocompletion=_complete_tags),
        as_json: bool = JsonOpt) -> None:
    """Add tags to a ticket."""
    r = _ctx(ctx).call("tag", id=ticket_id, tags=list(tags))
    _done(r, as_json, f"{ticket_id} tagged {', '.join(tags)}")


@app.command()
def untag(ctx: typer.Context, ticket_id: str = TicketId,
          tags: list[str] = typer.Argument(..., metavar="TAG...", autocompletion=_complete_tags),
          as_json: bool = JsonOpt) -> None:
    """Remove tags from a ticket."""
    r = _ctx(ctx).call("untag", id=ticket_id, tags=list(tags))
    _done(r, as_json, f"{ticket_id} untagged {', '.join(tags)}")


@app.command()
def priority(ctx: typer.Context, ticket_id: str = TicketId,
             level: str = typer.Argument(..., metavar="PRIORITY", help="low, normal, high or urgent"),
             as_json: bool = JsonOpt) -> None:
    """Set a ticket's priority."""
    r = _ctx(ctx).call("priority", id=ticket_id, priority=level)
    _done(r, as_json, f"{ticket_id} priority {level}")


@app.command()
def escalate(ctx: typer.Context, ticket_id: str = TicketId,
             to: str = typer.Option(..., "--to", help="A team, a tier (tier2) or supervisor."),
             reason: str = typer.Option(..., "--reason", help="Why; kept for reports."),
             as_json: bool = JsonOpt) -> None:
    """Escalate a ticket to a team, a higher tier or the supervisors."""
    r = _ctx(ctx).call("escalate", id=ticket_id, to=to, reason=reason)
    # Say where it went: the tier's agent, its pool, or the supervisors (inboxd.desk.tiers).
    told = f"; told {', '.join(r['notified'])}" if r.get("notified") else ""
    _done(r, as_json, f"{ticket_id} escalated to {r['to']}: {r['routed']}{told}" if r.get("routed")
          else f"{ticket_id} escalated to {to}")


@app.command()
def note(ctx: typer.Context, ticket_id: str = TicketId,
         message: str = typer.Option(..., "-m", "--message", help="The note (internal, never mailed)."),
         as_json: bool = JsonOpt) -> None:
    """Add an internal note (never mailed to the customer)."""
    r = _ctx(ctx).call("note", id=ticket_id, message=message)
    _done(r, as_json, f"note added to {ticket_id}")


@app.command()
def reply(ctx: typer.Context, ticket_id: str = TicketId,
          message: Optional[str] = typer.Option(None, "-m", "--message",
                                                help="The reply; without it $EDITOR opens on a quoting template."),
          as_json: bool = JsonOpt) -> None:
    """Answer the customer (through the outbox, threaded); the ticket then waits on them."""
    state = _ctx(ctx)
    if message is None:
        message = _edit(_reply_template(state, ticket_id))
    r = state.call("reply", id=ticket_id, message=message)
    _done(r, as_json, f"reply to {ticket_id} queued ({r['message_id']})")


def _reply_template(state: Context, ref: str) -> str:
    t = state.call("show", id=ref)
    last = next((m for m in reversed(t["messages"]) if m["kind"] == "customer"), None)
    lines = ["", "", f"# Reply to {t['id']}: {t['subject']}", "# Lines starting with # are dropped."]
    if last:
        lines.append(f"On {last['date']}, {last['from']} wrote:")
        lines += ["> " + line for line in last["reply_text"].splitlines()]
    return "\n".join(lines) + "\n"


def _edit(template: str) -> str:
    import subprocess
    import tempfile

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise UserError("no -m given and no $EDITOR set")
    with tempfile.NamedTemporaryFile("w+", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write(template)
        path = fh.name
    try:
        import shlex

        if subprocess.call([*shlex.split(editor), path]) != 0:
            raise UserError("the editor failed; nothing was sent")
        text = Path(path).read_text(encoding="utf-8")
    finally:
        os.unlink(path)
    body, untouched = _without_comments(text), _without_comments(template)
    # A saved-but-unchanged template holds only the quoted customer mail:
    # sending that would answer the customer with their own words.
    if not body or body == untouched:
        raise UserError("empty reply; nothing was sent")
    return body + "\n"


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip()


@app.command()
def merge(ctx: typer.Context, ticket_id: str = TicketId,
          into: str = typer.Argument(..., metavar="INTO_ID", autocompletion=_complete_ids),
          as_json: bool = JsonOpt) -> None:
    """Merge a ticket into another (its messages move; it is closed and points there)."""
    r = _ctx(ctx).call("merge", id=ticket_id, into=into)
    _done(r, as_json, f"{ticket_id} merged into {into} ({r['messages']} message(s) moved)")


@app.command()
def history(ctx: typer.Context, ticket_id: str = TicketId, as_json: bool = JsonOpt) -> None:
    """A ticket's audit history: who did what, when, before and after."""
    from inboxd.cli.tables import local_text

    events = _ctx(ctx).call("history", id=ticket_id)
    if as_json:
        _print_json(events)
        return
    from inboxd.cli.terminal import printable

    # In the acting agent's zone and language, as `show` prints them; --json keeps UTC.
    zone, language = _reader(_ctx(ctx))
    for e in events:
        # Event details quote mail (senders, bounce reasons, notes).
        at = local_text(e["at"], zone, language, year=True)
        typer.echo(printable(f"{at}  {e['actor']:<10} {e['action']:<10} {_detail(e['detail'])}"))


macro_app = typer.Typer(help="Canned replies with actions, from the macros in inboxd.toml.", no_args_is_help=True,
                        rich_markup_mode=PLAIN_HELP)
app.add_typer(macro_app, name="macro")


@macro_app.command("list")
def macro_list(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """The configured macros."""
    rows = _ctx(ctx).call("macro_list")
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        actions = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "template") and v)
        typer.echo(f"{r['name']:<20} {actions}")


@macro_app.command("show")
def macro_show(ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME", autocompletion=_complete_macros),
               ticket_id: str = TicketId) -> None:
    """Render a macro for a ticket without sending anything."""
    text = _ctx(ctx).call("macro_show", id=ticket_id, name=name)
    typer.echo(text, nl=not text.endswith("\n"))


@macro_app.command("apply")
def macro_apply(ctx: typer.Context, ticket_id: str = TicketId,
                name: str = typer.Argument(..., metavar="NAME", autocompletion=_complete_macros),
                edit: bool = typer.Option(False, "--edit", help="Edit the rendered text in $EDITOR first."),
                as_json: bool = JsonOpt) -> None:
    """Send a macro's reply and apply its actions."""
    state = _ctx(ctx)
    text = None
    if edit:
        text = _edit(state.call("macro_show", id=ticket_id, name=name))
    r = state.call("macro_apply", id=ticket_id, name=name, text=text)
    _done(r, as_json, f"macro {name} applied to {ticket_id}")


@app.command()
def report(ctx: typer.Context,
           since: Optional[str] = typer.Option(None, "--since", help="Start date (default: 7 days before --until)."),
           until: Optional[str] = typer.Option(None, "--until", help="End date, exclusive (default: now)."),
           mailbox: Optional[str] = typer.Option(None, "--mailbox"),
           team: Optional[str] = typer.Option(None, "--team"),
           agent: Optional[str] = typer.Option(None, "--agent", help="One agent's tickets (yours, unless supervisor)."),
           fmt: str = typer.Option("table", "--format", help="table, json, csv or html."),
           per_agent: Optional[bool] = typer.Option(None, "--per-agent/--no-per-agent",
                                                    help="The per-agent section (supervisors; on by default for them).")) -> None:
    """Helpdesk metrics for a period: volume, response times, SLA, CSAT, backlog."""
    state = _ctx(ctx)
    out = state.call("report", since=since, until=until, mailbox=mailbox, team=team, agent=agent, format=fmt,
                     per_agent=per_agent)
    if isinstance(out, str):
        typer.echo(out, nl=False)
    else:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))


@app.command()
def export(ctx: typer.Context,
           fmt: str = typer.Option("json", "--format", help="csv or json."),
           since: Optional[str] = typer.Option(None, "--since"),
           until: Optional[str] = typer.Option(None, "--until"),
           full: bool = typer.Option(False, "--full", help="Unmasked customer data (admins only).")) -> None:
    """Tickets and messages (supervisors; customer data masked unless --full)."""
    typer.echo(_ctx(ctx).call("export", format=fmt, since=since, until=until, full=full), nl=False)


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


# The operator's commands (status, audit, quarantine show/retry) register themselves on `app`.
from inboxd.cli import ops as cli_ops  # noqa: E402,F401
# `new`, `customer` and `set` (inboxd.cli.desk) too.
from inboxd.cli import desk as cli_desk  # noqa: E402,F401
# `backup` and `restore` (inboxd.cli.backup) too.
from inboxd.cli import backup as cli_backup  # noqa: E402,F401
# `token create|list|revoke` (inboxd.cli.tokens) too.
from inboxd.cli import tokens as cli_tokens  # noqa: E402,F401
# `oauth login` (inboxd.cli.oauth) too.
from inboxd.cli import oauth as cli_oauth  # noqa: E402,F401
