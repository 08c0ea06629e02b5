"""Turn inboxd.toml into frozen, validated settings, or one line that says what is wrong.

Every key is declared once (the ``*_KEYS`` tables: here, and for the desk's
sections in the desk module that reads them) and documented once in
``config/inboxd.reference.toml``; a test keeps the two in step.  The whole file
is read in one pass: ``parse_settings`` also hands the desk's sections
(``[[calendars]]``, ``[[sla]]``, ``[[rules]]``, ``[[customer_groups]]``,
``[[teams]]``, ``[scheduler]``, ``[csat]``, ``[[macros]]``) to their parsers, so
a mistake anywhere fails the load with the same one-line error, and the rest
of inboxd reads parsed, frozen values (``settings.policies``,
``settings.macros``), never raw TOML.  Secrets are described here but only read
by ``Secret.reveal()``, so ``check-config`` works on a machine that does not
hold them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import string
import subprocess
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from inboxd.desk.macros import Macro
    from inboxd.desk.policies import Policies


# Defined in the light inboxd.configpath, which the thin client imports instead of this module.
from inboxd.configpath import ConfigError, find_config_path  # noqa: E402,F401


# The keys each table accepts.  The reference file must mention every one of them.
TOP_KEYS = ("store", "tickets", "log", "smtp", "mailboxes", "agents", "autoreply", "outbox", "templates",
            "reports", "backup", "api", "oauth", "agent_mail")
# [agent_mail]: commands by mail and whom they are trusted from (inboxd.desk.mailcommands, .authresults).
AGENT_MAIL_KEYS = ("trust", "authserv_id")
API_KEYS = ("socket", "group", "listen", "cert", "key", "token_days")
TEMPLATES_KEYS = ("dir",)
REPORTS_KEYS = ("timezone", "repeat_window")
BACKUP_KEYS = ("every", "keep", "dir", "key_file")
STORE_KEYS = ("url", "data_dir", "max_attachment_bytes", "max_message_bytes", "lease")
TICKET_KEYS = ("id_format", "first_seq", "tag_format", "reopen_window")
AUTOREPLY_KEYS = ("enabled", "per_hour", "per_day", "per_domain_per_hour", "per_domain_per_minute",
                  "shared_domains", "bounce_expiry")
OUTBOX_KEYS = ("retry_base", "retry_max", "give_up_after", "lease", "interval", "sent_copy")
LOG_KEYS = ("level", "file")
PASSWORD_KEYS = ("password_env", "password_file", "password_command")
SMTP_KEYS = ("host", "port", "security", "username", *PASSWORD_KEYS, "ca_file", "timeout", "connections", "auth")
IMAP_KEYS = (
    "host", "port", "security", "username", *PASSWORD_KEYS, "folders", "sent_folder",
    "ca_file", "timeout", "batch_size", "batch_bytes", "idle", "poll_interval",
    "write_back", "seen_on_close", "auth", "command_folders",
)
MAILBOX_KEYS = ("name", "address", "display_name", "language", "timezone", "confirm_closes", "ack",
                "note_subaddress", "sla", "team", "history", "history_before", "imap", "smtp", "oauth")
# OAuth2 sign-in (inboxd.oauth): the top-level [oauth] and each mailbox's [mailboxes.oauth].
OAUTH_KEYS = ("key_file",)
CLIENT_SECRET_KEYS = ("client_secret_env", "client_secret_file", "client_secret_command")
MAILBOX_OAUTH_KEYS = ("provider", "client_id", *CLIENT_SECRET_KEYS, "tenant", "authority", "scopes", "flow",
                      "device_authorization_endpoint", "authorization_endpoint", "token_endpoint", "mechanism")
AGENT_KEYS = ("name", "email", "login", "display_name", "role", "teams", "tier", "notify", "language", "timezone")

# The desk's sections.  Their keys are declared by the module that gives them
# meaning (inboxd.desk.sla, .routing, .csat, .policies, .macros), and
# parse_settings runs those parsers in the same pass as everything else.
DESK_TOP_KEYS = (
    "sla", "calendars", "rules", "customer_groups", "macros", "csat", "scheduler", "teams", "fields", "confirm",
)

# Sections people write by mistake, with where the setting really lives.
# A section that nothing reads would otherwise be accepted and ignored.
MISPLACED_TOP_KEYS: Mapping[str, str] = MappingProxyType({
    "loop": "[loop] is not a section; the auto-reply budget is [autoreply] per_hour and per_day",
})

# Section name (as written in TOML, without brackets) -> the keys it accepts.
KNOWN_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "store": STORE_KEYS,
    "tickets": TICKET_KEYS,
    "log": LOG_KEYS,
    "smtp": SMTP_KEYS,
    "mailboxes": MAILBOX_KEYS,
    "mailboxes.imap": IMAP_KEYS,
    "mailboxes.smtp": SMTP_KEYS,
    "mailboxes.oauth": MAILBOX_OAUTH_KEYS,
    "oauth": OAUTH_KEYS,
    "agents": AGENT_KEYS,
    "autoreply": AUTOREPLY_KEYS,
    "outbox": OUTBOX_KEYS,
    "templates": TEMPLATES_KEYS,
    "reports": REPORTS_KEYS,
    "backup": BACKUP_KEYS,
    "api": API_KEYS,
    "agent_mail": AGENT_MAIL_KEYS,
})

SECURITY_CHOICES = ("tls", "starttls", "none")
IMAP_DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
SMTP_DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}
# "zh" is Simplified Chinese (zh-Hans); "zh-Hant" Traditional Chinese.
LANGUAGES = ("en", "zh", "zh-Hant")
ROLES = ("agent", "supervisor", "admin")
NOTIFY_CHOICES = ("all", "assigned", "none")
HISTORY_CHOICES = ("closed", "open", "skip")
# What a command folder may do ([mailboxes.imap] command_folders; inboxd.desk.foldercommands).
FOLDER_COMMANDS = ("close", "solve", "pending", "spam")
# Whom commands by mail are trusted from: nobody, or a sender the admin's server authenticated.
TRUST_CHOICES = ("none", "auth-results")
AUTH_CHOICES = ("password", "oauth2")
OAUTH_PROVIDERS = ("microsoft", "google", "generic")
OAUTH_MECHANISMS = ("xoauth2", "oauthbearer")
# How `oauth login` gets the user's consent: RFC 8628's device code, or a browser sent back to a loopback
# address (authorization code with PKCE, RFC 8252), which Google requires for Gmail's scope.
OAUTH_FLOWS = ("device", "browser")
# Per provider: the scopes, the endpoints (Microsoft's come from msal) and the SASL mechanism, unless set.
# Exchange Online speaks only XOAUTH2; Gmail both; OAUTHBEARER (RFC 7628) is the standard one.
OAUTH_DEFAULTS: Mapping[str, dict[str, Any]] = MappingProxyType({
    "microsoft": {"scopes": ("https://outlook.office.com/IMAP.AccessAsUser.All",
                             "https://outlook.office.com/SMTP.Send"),
                  "device_authorization_endpoint": "", "authorization_endpoint": "", "token_endpoint": "",
                  "mechanism": "xoauth2", "flow": "device"},
    "google": {"scopes": ("https://mail.google.com/",),
               "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
               "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
               "token_endpoint": "https://oauth2.googleapis.com/token", "mechanism": "xoauth2", "flow": "browser"},
    "generic": {"scopes": (), "device_authorization_endpoint": "", "authorization_endpoint": "", "token_endpoint": "",
                "mechanism": "oauthbearer", "flow": "device"},
})
LOG_LEVELS = ("debug", "info", "warning", "error")

PLAIN_PASSWORD = (
    "plain-text passwords are not accepted; use password_env, password_file or password_command"
)
MAILBOX_NAME = re.compile(r"[a-z0-9_-]+")
AGENT_NAME = re.compile(r"[a-z0-9_.-]+")
NOTE_SUBADDRESS = re.compile(r"[a-z0-9_.-]+")
# Deliberately loose: a local part, one "@" and a dotted domain (or a bare host
# such as "localhost").  Real validation happens when the mail server answers.
EMAIL = re.compile(r"[^@\s<>(),;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
from inboxd.configpath import SQLITE_URL  # noqa: E402
# How long a password command may run before we give up on it.
PASSWORD_COMMAND_TIMEOUT = 30.0


def _shipped_templates() -> Path:
    """The templates that ship with inboxd.

    The repository's top-level templates/ folder is installed as the package
    inboxd._templates (see pyproject.toml).  An editable install or a source
    checkout has no such package, and there the folder itself is used.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("inboxd._templates")
    except ImportError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / "en").is_dir():
            return Path(location)
    return Path(__file__).resolve().parents[1] / "templates"


SHIPPED_TEMPLATES = _shipped_templates()


@dataclass(frozen=True)
class Secret:
    """Where a password comes from: exactly one of an environment variable, a file or a command."""

    env: str | None = None
    file: Path | None = None
    command: str | None = None
    # Where the secret was declared ("inboxd.toml: smtp.password_env"), so that a
    # failure at reveal() time still points at the key.  Not part of equality.
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        given = [v for v in (self.env, self.file, self.command) if v is not None]
        if len(given) != 1:
            raise ConfigError("a Secret needs exactly one of env, file or command")

    def reveal(self) -> str:
        """Read the secret now; ConfigError names the source, never the value."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                self._fail(f"environment variable {self.env} is not set")
            if value == "":
                self._fail(f"environment variable {self.env} is empty")
            return value
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                self._fail(f"cannot read password file {self.file}: {exc.strerror or exc}")
            except UnicodeDecodeError:
                self._fail(f"password file {self.file} is not valid UTF-8")
            if value == "":
                self._fail(f"password file {self.file} is empty")
            return value
        return self._run_command()

    def _run_command(self) -> str:
        assert self.command is not None
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            self._fail(f"password command {json.dumps(self.command)} cannot be parsed: {exc}")
        if not argv:
            self._fail("password command is empty")
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=PASSWORD_COMMAND_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            self._fail(f"password command {json.dumps(self.command)}: {argv[0]} not found")
        except subprocess.TimeoutExpired:
            self._fail(f"password command {json.dumps(self.command)} timed out")
        except OSError as exc:
            self._fail(f"password command {json.dumps(self.command)} failed: {exc.strerror or exc}")
        # Neither stdout nor stderr is quoted: either might contain the secret.
        if done.returncode != 0:
            self._fail(
                f"password command {json.dumps(self.command)} exited with status {done.returncode}"
            )
        value = done.stdout.strip()
        if value == "":
            self._fail(f"password command {json.dumps(self.command)} printed nothing")
        return value

    def _fail(self, problem: str) -> NoReturn:
        raise ConfigError(f"{self.origin}: {problem}" if self.origin else problem)

    def __repr__(self) -> str:
        if self.env is not None:
            return f"Secret(env={self.env!r})"
        if self.file is not None:
            return f"Secret(file={str(self.file)!r})"
        return f"Secret(command={self.command!r})"


@dataclass(frozen=True)
class OAuthSettings:
    """[mailboxes.oauth]: how one mailbox signs in with OAuth2 (inboxd.oauth does it)."""
    mailbox: str
    provider: str                  # microsoft | google | generic
    client_id: str
    # Where `inboxd oauth login` keeps the encrypted refresh token: data_dir/oauth/<mailbox>.token.
    token_file: Path
    # The Fernet key: [oauth] key_file, else $INBOXD_SECRET_KEY, else "key" beside the token file.
    key_file: Path | None = None
    client_secret: Secret | None = None
    tenant: str = "organizations"  # Microsoft only
    # Microsoft only: the cloud's sign-in host (21Vianet: https://login.partner.microsoftonline.cn).
    authority: str = "https://login.microsoftonline.com"
    scopes: tuple[str, ...] = ()
    device_authorization_endpoint: str = ""
    token_endpoint: str = ""
    mechanism: str = "xoauth2"     # xoauth2 | oauthbearer
    flow: str = "device"           # device | browser (`oauth login`)
    authorization_endpoint: str = ""


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str
    username: str
    password: Secret | None
    folders: tuple[str, ...] = ("INBOX",)
    sent_folder: str | None = None
    ca_file: Path | None = None
    timeout: float = 30.0
    batch_size: int = 200
    batch_bytes: int = 2 * 1024 * 1024
    idle: bool = True
    poll_interval: float = 60.0
    # Opt-in writes to the server (inboxd.desk.keywords): the ticket's state as
    # keywords (or Gmail labels), and \Seen following solved/closed.
    write_back: bool = False
    seen_on_close: bool = False
    # "oauth2": sign in with the mailbox's [mailboxes.oauth] token instead of a password.
    auth: str = "password"
    oauth: OAuthSettings | None = None
    # Folders that are commands (inboxd.desk.foldercommands): a message moved there is acted on, then moved
    # back.  Folder name -> one of FOLDER_COMMANDS; empty: none (the default, read-only).
    command_folders: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = None
    timeout: float = 30.0
    # How many connections the sender keeps open to this server at once.
    connections: int = 4
    # "oauth2" (a mailbox's own [mailboxes.smtp] only): sign in with the mailbox's token.
    auth: str = "password"
    oauth: OAuthSettings | None = None


@dataclass(frozen=True)
class MailboxSettings:
    name: str
    address: str
    display_name: str
    imap: ImapSettings
    smtp: SmtpSettings | None = None
    language: str = "en"
    # The zone customers read times in; None: the mailbox's SLA calendar's, else the machine's
    # (resolved by Policies.mailbox_zone).
    timezone: ZoneInfo | None = None
    # A short "thanks, solved" reply to a solved ticket closes it instead of reopening it (desk/confirm.py).
    confirm_closes: bool = True
    ack: bool = True
    note_subaddress: str = "note"
    sla: str | None = None         # the SLA policy for this mailbox's tickets (checked by inboxd.desk.policies)
    team: str | None = None        # the team new tickets of this mailbox belong to
    # What mail that arrived before a folder's cut-off becomes, and the
    # cut-off itself (None: the moment inboxd first synced the folder).
    history: str = "closed"        # closed | open | skip
    history_before: datetime | None = None

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1].lower()

    def note_address(self) -> str:
        """support+note@example.com: mail to it from an agent is an internal note."""
        local, domain = self.address.rsplit("@", 1)
        return f"{local}+{self.note_subaddress}@{domain}".lower()


@dataclass(frozen=True)
class AgentSettings:
    name: str
    email: str
    role: str = "agent"
    teams: tuple[str, ...] = ()
    tier: int | None = None
    notify: str = "assigned"
    # The name people read ("小王"); `name` stays the short ASCII handle of the CLI.
    display_name: str = ""
    language: str = "en"
    timezone: ZoneInfo | None = None    # None: the machine's (Policies.agent_zone)
    # The Unix user this agent is on the daemon's socket (SO_PEERCRED); "" means the same as `name`.
    login: str = ""

    @property
    def unix_login(self) -> str:
        """The Unix user name the daemon's API knows this agent by."""
        return self.login or self.name

    @property
    def label(self) -> str:
        """The agent's display name, else the handle."""
        return self.display_name or self.name


@dataclass(frozen=True)
class StoreSettings:
    url: str
    data_dir: Path
    max_attachment_bytes: int = 25 * 1024 * 1024
    # Mail larger than this (by RFC822.SIZE) is streamed to data_dir/oversize and quarantined.
    max_message_bytes: int = 25 * 1024 * 1024
    # How long a daemon's hold on a folder lasts unless renewed (inboxd.store.leases).
    lease: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class TicketSettings:
    id_format: str = "T-{seq}"
    first_seq: int = 1000
    tag_format: str = "[{id}]"
    reopen_window: timedelta = timedelta(days=14)


@dataclass(frozen=True)
class AutoreplySettings:
    enabled: bool = True
    per_hour: int = 3
    per_day: int = 10
    per_domain_per_hour: int = 30
    per_domain_per_minute: int = 5
    shared_domains: frozenset[str] = frozenset()
    bounce_expiry: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class OutboxSettings:
    retry_base: timedelta = timedelta(seconds=30)
    retry_max: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(days=2)
    lease: timedelta = timedelta(minutes=5)
    interval: timedelta = timedelta(seconds=5)
    sent_copy: bool = True


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    file: Path | None = None


@dataclass(frozen=True)
class ReportSettings:
    # Hours, weekdays and days of the reports are counted in this zone.
    timezone: ZoneInfo = ZoneInfo("UTC")
    # A customer who writes again within this long of a resolved ticket counts as a repeat complaint.
    repeat_window: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class BackupSettings:
    """[backup]: the daemon's scheduled backups (inboxd.desk.backups); absent means none."""
    dir: Path
    every: timedelta = timedelta(days=1)
    # How many scheduled backups are kept in `dir`; older ones are deleted.
    keep: int = 14
    # An age key (identity, or a recipient for encrypting only): backups are encrypted with it when set.
    key_file: Path | None = None


DEFAULT_API_SOCKET = Path("/run/inboxd/api.sock")


@dataclass(frozen=True)
class AgentMailSettings:
    """[agent_mail]: whether agents' commands by mail are trusted (inboxd.desk.authresults).

    "none" (the default): no command by mail runs, and the agent is told why;
    "auth-results": a command runs when the admin's receiving server (one of
    `authserv_id`) vouched for the agent's address in its Authentication-Results.
    """
    trust: str = "none"
    authserv_id: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApiSettings:
    """[api]: where the daemon serves the CLI's API (inboxd.api.server).

    The Unix socket is always the way in on the machine: the kernel tells the
    daemon who the caller is.  TCP (with TLS and per-agent tokens) is optional.
    """
    # None: no socket (only the store's owner can then use the CLI, directly).
    socket: Path | None = DEFAULT_API_SOCKET
    # The group that may connect (the socket is mode 0660); "" leaves the daemon's own group.
    group: str = "inboxd"
    # "host:port" for agents on other machines; None: no TCP listener.
    listen: str | None = None
    cert: Path | None = None
    key: Path | None = None
    # How long a token from `inboxd token create` lasts unless --days says otherwise.
    token_days: int = 90


@dataclass(frozen=True)
class Settings:
    path: Path
    store: StoreSettings
    smtp: SmtpSettings | None
    mailboxes: tuple[MailboxSettings, ...]
    agents: tuple[AgentSettings, ...]
    tickets: TicketSettings
    log: LogSettings
    # The desk's sections, parsed by inboxd.desk.policies and inboxd.desk.macros.
    # Left out of repr and equality: compiled rules are closures, which compare
    # by identity, so two loads of one file would otherwise differ.
    policies: Policies = field(repr=False, compare=False)
    macros: Mapping[str, Macro] = field(repr=False, compare=False)
    autoreply: AutoreplySettings = AutoreplySettings()
    outbox: OutboxSettings = OutboxSettings()
    reports: ReportSettings = ReportSettings()
    templates_dir: Path = SHIPPED_TEMPLATES
    backup: BackupSettings | None = None
    api: ApiSettings = ApiSettings()
    agent_mail: AgentMailSettings = AgentMailSettings()

    def mailbox(self, name: str) -> MailboxSettings:
        """The mailbox called name; LookupError (one line) when there is none."""
        for mailbox in self.mailboxes:
            if mailbox.name == name:
                return mailbox
        known = ", ".join(m.name for m in self.mailboxes)
        raise LookupError(f"no mailbox named {json.dumps(name)}; known mailboxes: {known}")

    def agent(self, name: str) -> AgentSettings | None:
        return next((a for a in self.agents if a.name == name), None)

    def agent_by_login(self, login: str) -> AgentSettings | None:
        """The agent whose `login` (by default their name) is this Unix user."""
        return next((a for a in self.agents if a.unix_login == login), None)

    def agent_by_email(self, email: str) -> AgentSettings | None:
        wanted = email.strip().lower()
        return next((a for a in self.agents if a.email.lower() == wanted), None)

    def mailbox_by_address(self, address: str) -> MailboxSettings | None:
        """The mailbox an address reaches, including its +sub-addresses."""
        local, _, domain = address.strip().lower().partition("@")
        plain = f"{local.split('+', 1)[0]}@{domain}"
        return next((m for m in self.mailboxes if m.address.lower() == plain), None)

    def own_addresses(self) -> frozenset[str]:
        """Every mailbox address and agent email, lower-cased."""
        return frozenset([m.address.lower() for m in self.mailboxes] + [a.email.lower() for a in self.agents])

    @property
    def template_dirs(self) -> tuple[Path, ...]:
        """Where templates are looked for, in order: the deployment's folder, then the shipped one.

        Each file is taken from the first folder that has it, so a deployment
        can override one template and inherit the rest.
        """
        return tuple(dict.fromkeys((self.templates_dir, SHIPPED_TEMPLATES)))

    def smtp_for(self, mailbox: MailboxSettings) -> SmtpSettings | None:
        """The mailbox's own [mailboxes.smtp] if it has one, else the global [smtp]."""
        return mailbox.smtp if mailbox.smtp is not None else self.smtp


def load_settings(path: str | Path) -> Settings:
    """Read and validate one config file; ConfigError on any problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: {_toml_problem(str(exc))}") from None
    return parse_settings(data, path)


def _toml_problem(message: str) -> str:
    """Turn tomllib's 'Invalid value (at line 3, column 7)' into 'line 3, column 7: Invalid value'."""
    message = " ".join(message.split())
    where = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message)
    if where:
        return f"line {where[2]}, column {where[3]}: {where[1]}"
    end = re.fullmatch(r"(.*) \(at end of document\)", message)
    if end:
        return f"end of document: {end[1]}"
    return message


def parse_settings(data: dict, path: Path) -> Settings:
    """Validate an already-parsed TOML document that was read from path."""
    path = Path(path).absolute()
    base = path.parent
    for key, problem in MISPLACED_TOP_KEYS.items():
        if key in data:
            raise ConfigError(f"{path.name}: {key}: {problem}")
    top = Table(path.name, "", data, TOP_KEYS + DESK_TOP_KEYS)

    store = _store(top.table("store", STORE_KEYS), base)
    tickets = _tickets(top.table("tickets", TICKET_KEYS))
    log = _log(top.table("log", LOG_KEYS), base)
    smtp = _smtp(top.table("smtp", SMTP_KEYS), base) if "smtp" in data else None
    oauth_key = top.table("oauth", OAUTH_KEYS).optional_path("key_file", base)
    mailboxes = _mailboxes(top, base, store.data_dir, oauth_key)
    agents = _agents(top, mailboxes)
    autoreply = _autoreply(top.table("autoreply", AUTOREPLY_KEYS))
    outbox = _outbox(top.table("outbox", OUTBOX_KEYS))
    templates = top.table("templates", TEMPLATES_KEYS)
    templates_dir = templates.optional_path("dir", base) or (
        base / "templates" if (base / "templates").is_dir() else SHIPPED_TEMPLATES)
    # The desk's parsers import this module (for Table and ConfigError), so
    # they are imported here rather than at the top of the file.
    from inboxd.desk.macros import read_macros
    from inboxd.desk.policies import read_policies

    policies = read_policies(top, mailboxes=mailboxes, agents=agents, data_dir=store.data_dir, base=base)
    reports = _reports(top.table("reports", REPORTS_KEYS))
    backup = _backup(top.table("backup", BACKUP_KEYS), base) if "backup" in data else None
    macros = read_macros(top, agents=agents)
    api = _api(top.table("api", API_KEYS), base)
    agent_mail = _agent_mail(top.table("agent_mail", AGENT_MAIL_KEYS))
    return Settings(
        path=path, store=store, smtp=smtp, mailboxes=mailboxes, agents=agents, tickets=tickets, log=log,
        policies=policies, macros=macros, autoreply=autoreply, outbox=outbox, reports=reports,
        templates_dir=templates_dir, backup=backup, api=api, agent_mail=agent_mail,
    )


def check_files(settings: Settings) -> list[str]:
    """Problems with files the config points at; for check-config, not load (a demo creates them later)."""
    file = settings.path.name
    problems = []
    servers: list[tuple[str, ImapSettings | SmtpSettings | None]] = [("smtp", settings.smtp)]
    for index, mailbox in enumerate(settings.mailboxes):
        servers.append((f"mailboxes[{index}].imap", mailbox.imap))
        servers.append((f"mailboxes[{index}].smtp", mailbox.smtp))
    for key, server in servers:
        if server is not None and server.ca_file is not None and not server.ca_file.is_file():
            problems.append(f"{file}: {key}.ca_file: no such file: {server.ca_file}")
    if settings.log.file is not None and not settings.log.file.parent.is_dir():
        problems.append(f"{file}: log.file: no such directory: {settings.log.file.parent}")
    return problems


# --- One function per table: read its keys with their defaults and cross-checks.

def _store(table: Table, base: Path) -> StoreSettings:
    url = table.string("url", "sqlite:///inboxd.db")
    if not re.match(r"[A-Za-z][\w+.-]*://", url):
        table.fail("url", f"expected a database URL such as \"sqlite:///inboxd.db\", got {show(url)}")
    _check_store_driver(table, url)
    return StoreSettings(
        url=_absolute_sqlite_url(url, base),
        data_dir=base / table.string("data_dir", "var"),
        max_attachment_bytes=table.integer("max_attachment_bytes", 25 * 1024 * 1024, low=0),
        max_message_bytes=table.integer("max_message_bytes", 25 * 1024 * 1024, low=64 * 1024),
        lease=_folder_lease(table),
    )


def _folder_lease(table: Table) -> timedelta:
    lease = table.duration("lease", "30s")
    # It is renewed every third of itself; under 3 s that is a store write a second per folder.
    if lease < timedelta(seconds=3):
        table.fail("lease", f"must be at least 3s, got {show(table.get('lease', '30s'))}")
    return lease


def _check_store_driver(table: Table, url: str) -> None:
    """Refuse a URL whose database kind is unknown or whose driver is not installed.

    Without this, check-config says OK and the first command that opens the
    store dies on an import error.  Plain SQLite needs only the standard
    library, so the common case does not pay for importing SQLAlchemy here.
    """
    if url.startswith("sqlite://"):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        scheme = url.split("://", 1)[0]
        table.fail("url", f"unknown kind of database {show(scheme)} (SQLAlchemy has no such dialect);"
                          " the default is \"sqlite:///inboxd.db\"")
    except ArgumentError as exc:
        table.fail("url", f"not a valid database URL: {' '.join(str(exc).split())}")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or str(exc)
        table.fail("url", f"the {dialect.driver} driver for {parsed.get_backend_name()} is not installed"
                          f" (no module named {show(module)}); install it into inboxd's Python environment")


def _absolute_sqlite_url(url: str, base: Path) -> str:
    """Rewrite a relative SQLite path so that it is relative to the config file, not the cwd."""
    match = SQLITE_URL.fullmatch(url)
    if not match:
        return url
    scheme, db_path, query = match[1], match[2], match[3] or ""
    if db_path in ("", ":memory:") or db_path.startswith("/"):
        return url
    return f"{scheme}:///{base / db_path}{query}"


def _tickets(table: Table) -> TicketSettings:
    id_format = table.string("id_format", "T-{seq}")
    _check_format(table, "id_format", id_format, "seq", (1, 2))
    tag_format = table.string("tag_format", "[{id}]")
    _check_format(table, "tag_format", tag_format, "id", ("T-1", "T-2"))
    return TicketSettings(
        id_format=id_format,
        first_seq=table.integer("first_seq", 1000, low=0),
        tag_format=tag_format,
        reopen_window=table.duration("reopen_window", "14d"),
    )


# Mail providers whose one domain is shared by millions of unrelated people:
# a per-domain ceiling there would turn real customers away, so only the
# per-address budget applies to them.
SHARED_MAIL_DOMAINS = (
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com", "yahoo.com",
    "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com", "proton.me", "protonmail.com", "gmx.com",
    "gmx.de", "gmx.net", "web.de", "mail.com", "zoho.com", "yandex.ru", "mail.ru", "qq.com", "foxmail.com",
    "163.com", "126.com", "yeah.net", "sina.com", "sina.cn", "sohu.com", "aliyun.com", "139.com",
    "naver.com", "hanmail.net", "yahoo.co.jp",
)
_MAIL_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}")


def _autoreply(table: Table) -> AutoreplySettings:
    shared = tuple(d.strip().lower() for d in table.strings("shared_domains", SHARED_MAIL_DOMAINS))
    for domain in shared:
        if not _MAIL_DOMAIN.fullmatch(domain):
            table.fail("shared_domains", f"{domain!r} is not a domain name")
    return AutoreplySettings(
        enabled=table.boolean("enabled", True),
        per_hour=table.integer("per_hour", 3, low=0),
        per_day=table.integer("per_day", 10, low=0),
        per_domain_per_hour=table.integer("per_domain_per_hour", 30, low=0),
        per_domain_per_minute=table.integer("per_domain_per_minute", 5, low=0),
        shared_domains=frozenset(shared),
        bounce_expiry=table.duration("bounce_expiry", "30d"),
    )


def _outbox(table: Table) -> OutboxSettings:
    return OutboxSettings(
        retry_base=table.duration("retry_base", "30s"),
        retry_max=table.duration("retry_max", "1h"),
        give_up_after=table.duration("give_up_after", "2d"),
        lease=table.duration("lease", "5m"),
        interval=table.duration("interval", "5s"),
        sent_copy=table.boolean("sent_copy", True),
    )


def _reports(table: Table) -> ReportSettings:
    return ReportSettings(timezone=table.zone("timezone") or ZoneInfo("UTC"),
                          repeat_window=table.duration("repeat_window", "7d"))


def _backup(table: Table, base: Path) -> BackupSettings:
    folder = table.optional_path("dir", base)
    if folder is None:
        table.fail("dir", "missing; the folder the scheduled backups are written to, e.g. \"/var/backups/inboxd\"")
    every = table.duration("every", "1d")
    # Each backup copies the whole store: more often than hourly is a mistake, not a policy.
    if every < timedelta(hours=1):
        table.fail("every", f"must be at least 1h, got {show(table.get('every'))}")
    return BackupSettings(dir=folder, every=every, keep=table.integer("keep", 14, low=1),
                          key_file=table.optional_path("key_file", base))


def _agent_mail(table: Table) -> AgentMailSettings:
    trust = table.choice("trust", "none", TRUST_CHOICES)
    value = table.get("authserv_id", ())
    ids = (value,) if isinstance(value, str) else value
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) and i.strip() for i in ids):
        table.fail("authserv_id", f"must be a server name or a list of them, got {show(value)}")
    if trust == "auth-results" and not ids:
        table.fail("authserv_id", 'trust = "auth-results" needs the authserv-id your receiving server writes'
                                  ' in its Authentication-Results (e.g. "mx.example.com")')
    return AgentMailSettings(trust=trust, authserv_id=tuple(i.strip() for i in ids))


def _api(table: Table, base: Path) -> ApiSettings:
    socket = table.string("socket", str(DEFAULT_API_SOCKET))
    listen = table.string("listen", "") or None
    if listen is not None:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            table.fail("listen", f"expected \"host:port\", e.g. \"0.0.0.0:8443\", got {show(listen)}")
    cert, key = table.optional_path("cert", base), table.optional_path("key", base)
    # Tokens travel over TCP: never in clear text.
    if listen is not None and (cert is None or key is None):
        table.fail("cert" if cert is None else "key",
                   "missing; [api] listen serves over TLS only, so it needs a certificate and its key")
    return ApiSettings(socket=(base / socket) if socket else None, group=table.string("group", "inboxd"),
                       listen=listen, cert=cert, key=key, token_days=table.integer("token_days", 90, low=1))


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)\s*(w|d|h|m|s))", re.IGNORECASE)
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """ "90s", "15m", "4h", "2d", "1w" or combinations like "1h30m"; ValueError otherwise."""
    compact = text.replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"expected a duration such as \"90s\", \"15m\", \"4h\" or \"2d\", got {show(text)}")
    return timedelta(seconds=sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts))


def _check_format(table: Table, key: str, value: str, name: str, samples: tuple) -> None:
    """A format string must use {name} (optionally with a spec) and nothing else."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        first, second = (value.format(**{name: sample}) for sample in samples)
    except (KeyError, IndexError, ValueError, AttributeError):
        table.fail(key, f"must be a format using only {{{name}}}, got {show(value)}")
    # Two different inputs must give two different outputs, or ids would collide.
    if name not in fields or first == second:
        table.fail(key, f"must contain {{{name}}}, got {show(value)}")


def _log(table: Table, base: Path) -> LogSettings:
    return LogSettings(
        level=table.choice("level", "info", LOG_LEVELS),
        file=table.optional_path("file", base),
    )


def _smtp(table: Table, base: Path) -> SmtpSettings:
    security = table.choice("security", "starttls", SECURITY_CHOICES)
    username = table.string("username", "") or None
    return SmtpSettings(
        host=table.host("host"),
        port=table.integer("port", SMTP_DEFAULT_PORTS[security], low=1, high=65535),
        security=security,
        username=username,
        password=table.secret(base, username),
        ca_file=table.optional_path("ca_file", base),
        timeout=table.number("timeout", 30.0),
        connections=table.integer("connections", 4, low=1, high=64),
        auth=_auth(table, mailbox=False),
    )


def _imap(table: Table, base: Path) -> ImapSettings:
    security = table.choice("security", "tls", SECURITY_CHOICES)
    username = table.string("username")
    folders = table.strings("folders", ("INBOX",))
    if not folders:
        table.fail("folders", "must name at least one folder")
    for index, folder in enumerate(folders):
        if folder == "":
            table.fail(f"folders[{index}]", "must not be empty")
        if folder in folders[:index]:
            table.fail(f"folders[{index}]", f"duplicate folder {show(folder)}")
    return ImapSettings(
        host=table.host("host"),
        port=table.integer("port", IMAP_DEFAULT_PORTS[security], low=1, high=65535),
        security=security,
        username=username,
        password=table.secret(base, username),
        folders=folders,
        sent_folder=table.string("sent_folder", "") or None,
        ca_file=table.optional_path("ca_file", base),
        timeout=table.number("timeout", 30.0),
        batch_size=table.integer("batch_size", 200, low=1, high=5000),
        batch_bytes=table.integer("batch_bytes", 2 * 1024 * 1024, low=64 * 1024),
        idle=table.boolean("idle", True),
        poll_interval=table.number("poll_interval", 60.0),
        write_back=table.boolean("write_back", False),
        seen_on_close=table.boolean("seen_on_close", False),
        auth=_auth(table, mailbox=True),
        command_folders=_command_folders(table, folders),
    )


def _command_folders(table: Table, folders: tuple[str, ...]) -> Mapping[str, str]:
    """[mailboxes.imap] command_folders: { "Desk/Close" = "close", ... }, each value one of FOLDER_COMMANDS."""
    value = table.get("command_folders", {})
    if not isinstance(value, dict):
        table.fail("command_folders", f"must be a table of folder = command, got {show(value)}")
    for folder, command in value.items():
        key = f"command_folders.{folder}"
        if not folder.strip():
            table.fail(key, "the folder name must not be empty")
        if folder in folders:
            table.fail(key, f"{show(folder)} is synced as mail (folders); a command folder must be another one")
        if command not in FOLDER_COMMANDS:
            table.fail(key, f"unknown folder command {show(command)}; use one of {', '.join(FOLDER_COMMANDS)}")
    return MappingProxyType(dict(value))


def _auth(table: Table, mailbox: bool) -> str:
    """A server table's `auth`: "password" (the default) or "oauth2", which takes no password source."""
    auth = table.choice("auth", "password", AUTH_CHOICES)
    if auth == "oauth2":
        if not mailbox and table.path == "smtp":
            table.fail("auth", "\"oauth2\" signs in as one mailbox: set it in that mailbox's [mailboxes.smtp]")
        for key in PASSWORD_KEYS:
            if key in table.data:
                table.fail(key, "not used with auth = \"oauth2\" (the token comes from `inboxd oauth login`)")
    return auth


def _oauth(table: Table, base: Path, mailbox: str, data_dir: Path, key_file: Path | None) -> OAuthSettings:
    provider = table.choice("provider", "generic", OAUTH_PROVIDERS)
    defaults = OAUTH_DEFAULTS[provider]
    client_id = table.string("client_id").strip()
    if not client_id:
        table.fail("client_id", "must not be empty")
    scopes = table.strings("scopes", defaults["scopes"])
    if not scopes:
        table.fail("scopes", f"missing; provider {show(provider)} needs the scopes to ask for")
    flow = table.choice("flow", defaults["flow"], OAUTH_FLOWS)
    if provider == "microsoft" and flow != "device":
        table.fail("flow", "provider \"microsoft\" signs in with the device flow only")
    endpoints = {}
    needed = ("device_authorization_endpoint" if flow == "device" else "authorization_endpoint", "token_endpoint")
    for key in ("device_authorization_endpoint", "authorization_endpoint", "token_endpoint"):
        value = table.string(key, defaults[key]).strip()
        if provider == "microsoft" and key in table.data:
            table.fail(key, "not used with provider \"microsoft\" (msal knows Microsoft's endpoints; set tenant)")
        if key not in needed and key not in table.data:
            endpoints[key] = value
            continue
        if provider != "microsoft" and not re.match(r"https?://\S+$", value):
            table.fail(key, f"expected an http(s) URL, got {show(value)}" if value else
                       f"missing; provider {show(provider)} needs it")
        endpoints[key] = value
    for key in ("tenant", "authority"):
        if key in table.data and provider != "microsoft":
            table.fail(key, "only used with provider \"microsoft\"")
    authority = table.string("authority", "https://login.microsoftonline.com").strip().rstrip("/")
    if not re.match(r"https://[^/\s]+$", authority):
        table.fail("authority", f"expected an https URL of a host, e.g. \"https://login.microsoftonline.com\","
                                f" got {show(authority)}")
    return OAuthSettings(
        mailbox=mailbox, provider=provider, client_id=client_id,
        token_file=data_dir / "oauth" / f"{mailbox}.token", key_file=key_file,
        client_secret=table.secret(base, None, keys=CLIENT_SECRET_KEYS),
        tenant=table.string("tenant", "organizations").strip() or "organizations", authority=authority,
        scopes=scopes, mechanism=table.choice("mechanism", defaults["mechanism"], OAUTH_MECHANISMS), flow=flow,
        **endpoints,
    )


def _with_oauth(table: Table, imap: ImapSettings, smtp: SmtpSettings | None,
                oauth: OAuthSettings | None) -> tuple[ImapSettings, SmtpSettings | None]:
    """Give the mailbox's servers that sign in with OAuth2 its token settings; SMTP signs in as the IMAP user."""
    users = [name for name, server in (("imap", imap), ("smtp", smtp)) if server and server.auth == "oauth2"]
    if oauth is None:
        if users:
            table.fail(f"{users[0]}.auth", "\"oauth2\" needs a [mailboxes.oauth] table for this mailbox")
        return imap, smtp
    if not users:
        table.fail("oauth", "not used: set auth = \"oauth2\" in [mailboxes.imap] or [mailboxes.smtp]")
    if imap.auth == "oauth2":
        imap = replace(imap, oauth=oauth)
    if smtp is not None and smtp.auth == "oauth2":
        smtp = replace(smtp, oauth=oauth, username=smtp.username or imap.username)
    return imap, smtp


def _mailboxes(top: Table, base: Path, data_dir: Path, oauth_key: Path | None) -> tuple[MailboxSettings, ...]:
    tables = top.tables("mailboxes", MAILBOX_KEYS)
    if not tables:
        top.fail("mailboxes", "at least one [[mailboxes]] entry is required")
    mailboxes: list[MailboxSettings] = []
    for table in tables:
        name = table.name("name", MAILBOX_NAME)
        address = table.email("address")
        for index, other in enumerate(mailboxes):
            if other.name == name:
                table.fail("name", f"duplicate mailbox name {show(name)} (also mailboxes[{index}])")
            if other.address.lower() == address.lower():
                table.fail(
                    "address", f"duplicate mailbox address {show(address)} (also mailboxes[{index}])"
                )
        smtp = table.table("smtp", SMTP_KEYS)
        oauth = table.table("oauth", MAILBOX_OAUTH_KEYS)
        imap_settings, smtp_settings = _with_oauth(
            table, _imap(table.table("imap", IMAP_KEYS, required=True), base),
            _smtp(smtp, base) if smtp.present else None,
            _oauth(oauth, base, name, data_dir, oauth_key) if oauth.present else None)
        mailboxes.append(MailboxSettings(
            name=name,
            address=address,
            display_name=table.string("display_name", name.capitalize()),
            imap=imap_settings,
            smtp=smtp_settings,
            language=table.choice("language", "en", LANGUAGES),
            timezone=table.zone("timezone"),
            confirm_closes=table.boolean("confirm_closes", True),
            ack=table.boolean("ack", True),
            note_subaddress=table.name("note_subaddress", NOTE_SUBADDRESS) if "note_subaddress" in table.data else "note",
            sla=table.string("sla", "") or None,
            team=table.string("team", "") or None,
            history=table.choice("history", "closed", HISTORY_CHOICES),
            history_before=table.instant("history_before"),
        ))
    return tuple(mailboxes)


def _agents(top: Table, mailboxes: tuple[MailboxSettings, ...]) -> tuple[AgentSettings, ...]:
    agents: list[AgentSettings] = []
    for table in top.tables("agents", AGENT_KEYS):
        name = table.name("name", AGENT_NAME)
        email = table.email("email")
        for index, other in enumerate(agents):
            if other.name == name:
                table.fail("name", f"duplicate agent name {show(name)} (also agents[{index}])")
            if other.email.lower() == email.lower():
                table.fail("email", f"duplicate agent email {show(email)} (also agents[{index}])")
        for mailbox in mailboxes:
            if mailbox.address.lower() == email.lower():
                table.fail(
                    "email",
                    f"{show(email)} is the address of mailbox {show(mailbox.name)};"
                    " an agent must have a different address or replies would loop",
                )
        tier = table.integer("tier", None, low=0)
        login = table.string("login", "")
        if login and not re.fullmatch(r"[a-z_][a-z0-9_.-]*\$?", login):
            table.fail("login", f"not a Unix user name: {show(login)}")
        for index, other in enumerate(agents):
            if other.unix_login == (login or name):
                table.fail("login", f"Unix user {show(login or name)} is already agents[{index}] ({show(other.name)})")
        agents.append(AgentSettings(
            name=name,
            email=email,
            login=login,
            role=table.choice("role", "agent", ROLES),
            teams=table.strings("teams", ()),
            tier=tier,
            notify=table.choice("notify", "assigned", NOTIFY_CHOICES),
            display_name=" ".join(table.string("display_name", "").split()),
            language=table.choice("language", "en", LANGUAGES),
            timezone=table.zone("timezone"),
        ))
    return tuple(agents)


# --- The reader that every table goes through, so every message has one shape.

_MISSING: Any = object()


class Table:
    """One TOML table being read: its values, its key path and the keys it accepts.

    Public because the desk's parsers (inboxd.desk.sla, .routing, .csat,
    .policies, .macros) read their sections through it too, so that every
    config error has the same "<file>: <key path>: <problem>" shape.
    """

    def __init__(self, file: str, path: str, data: Any, known: tuple[str, ...]) -> None:
        self.file = file
        self.path = path
        self.present = data is not None
        self.data: dict[str, Any] = {} if data is None else data
        if not isinstance(self.data, dict):
            raise ConfigError(f"{file}: {path}: expected a table, got {show(data)}")
        for key in self.data:
            if key == "password" and "password_env" in known:
                self.fail(key, PLAIN_PASSWORD)
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {show(close[0])}?" if close else ""
                self.fail(key, f"unknown key {show(key)}{hint}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> NoReturn:
        raise ConfigError(f"{self.file}: {self.key(name)}: {problem}")

    def get(self, name: str, default: Any = _MISSING) -> Any:
        if name in self.data:
            return self.data[name]
        if default is _MISSING:
            self.fail(name, "missing required key")
        return default

    def table(self, name: str, known: tuple[str, ...], required: bool = False) -> Table:
        """A sub-table; when it is absent and not required, an empty one with present=False."""
        value = self.get(name, _MISSING if required else None)
        return Table(self.file, self.key(name), value, known)

    def tables(self, name: str, known: tuple[str, ...]) -> list[Table]:
        value = self.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(name, f"expected an array of tables ([[{name}]]), got {show(value)}")
        return [Table(self.file, f"{self.key(name)}[{i}]", v, known) for i, v in enumerate(value)]

    def string(self, name: str, default: Any = _MISSING) -> str:
        value = self.get(name, default)
        if not isinstance(value, str):
            self.fail(name, f"expected a string, got {show(value)}")
        return value

    def host(self, name: str) -> str:
        value = self.string(name).strip()
        if not value or any(c.isspace() for c in value):
            self.fail(name, f"expected a host name or address, got {show(value)}")
        return value

    def name(self, key: str, pattern: re.Pattern[str]) -> str:
        value = self.string(key)
        if not pattern.fullmatch(value):
            allowed = pattern.pattern
            self.fail(key, f"must match {allowed} (lower case, no spaces), got {show(value)}")
        return value

    def email(self, name: str) -> str:
        value = self.string(name).strip()
        if not EMAIL.fullmatch(value):
            self.fail(name, f"expected an email address, got {show(value)}")
        return value

    def integer(self, name: str, default: Any, low: int | None = None,
                high: int | None = None) -> Any:
        value = self.get(name, default)
        if value is None and default is None:
            return None
        # bool is a subclass of int in Python, but "port = true" is a mistake.
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(name, f"expected an integer, got {show(value)}")
        self._check_range(name, value, low, high)
        return value

    def number(self, name: str, default: float) -> float:
        """A positive number of seconds; TOML writes 30 and 30.0 differently, both are fine."""
        value = self.get(name, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.fail(name, f"expected a number, got {show(value)}")
        if not value > 0 or value == float("inf"):
            self.fail(name, f"must be a positive number, got {show(value)}")
        return float(value)

    def duration(self, name: str, default: str) -> timedelta:
        value = self.string(name, default)
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(name, str(exc))

    def instant(self, name: str) -> datetime | None:
        """An absolute time with a UTC offset: a TOML datetime or an ISO 8601 string."""
        value = self.get(name, None)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                self.fail(name, f"expected a time such as \"2026-11-01T00:00Z\", got {show(value)}")
        if not isinstance(value, datetime):
            self.fail(name, f"expected a time such as \"2026-11-01T00:00Z\", got {show(value)}")
        if value.tzinfo is None:
            self.fail(name, f"needs a UTC offset (e.g. \"Z\" or \"+08:00\"), got {show(value.isoformat())}")
        return value.astimezone(timezone.utc)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            self.fail(name, f"expected true or false, got {show(value)}")
        return value

    def zone(self, name: str) -> ZoneInfo | None:
        """An IANA time zone name ("Asia/Shanghai") as a ZoneInfo; None when the key is absent."""
        if name not in self.data:
            return None
        value = self.string(name)
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.fail(name, f'unknown time zone {show(value)}')

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in allowed:
            options = ", ".join(show(a) for a in allowed)
            self.fail(name, f"must be one of {options}, got {show(value)}")
        return value

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(name, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            self.fail(name, f"expected a list of strings, got {show(value)}")
        return tuple(value)

    def optional_path(self, name: str, base: Path) -> Path | None:
        """A path relative to the config file's directory; "" or absent means None."""
        value = self.string(name, "")
        return base / value if value else None

    def secret(self, base: Path, username: str | None,
               keys: tuple[str, str, str] = PASSWORD_KEYS) -> Secret | None:
        """The secret named by one of `keys` (*_env, *_file, *_command); a password also needs a username."""
        given = [key for key in keys if key in self.data]
        if not given:
            return None
        if len(given) > 1:
            what = "password source" if keys == PASSWORD_KEYS else "source"
            self.fail(given[1], f"conflicts with {given[0]}; give only one {what}")
        key = given[0]
        value = self.string(key)
        if value.strip() == "":
            self.fail(key, "must not be empty")
        if not username and keys == PASSWORD_KEYS:
            self.fail(key, "a password source is given but no username")
        origin = f"{self.file}: {self.key(key)}"
        if key == keys[0]:
            return Secret(env=value, origin=origin)
        if key == keys[1]:
            return Secret(file=base / value, origin=origin)
        try:
            shlex.split(value)
        except ValueError as exc:
            self.fail(key, f"cannot be split into a command: {exc}")
        return Secret(command=value, origin=origin)

    def _check_range(self, name: str, value: int, low: int | None, high: int | None) -> None:
        if low is not None and high is not None and not low <= value <= high:
            self.fail(name, f"must be between {low} and {high}, got {value}")
        if low is not None and value < low:
            self.fail(name, f"must be at least {low}, got {value}")
        if high is not None and value > high:
            self.fail(name, f"must be at most {high}, got {value}")


def show(value: Any) -> str:
    """A value as TOML would write it, short enough for a one-line message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (datetime, date, time)):
        text = value.isoformat()
    elif isinstance(value, dict):
        return "a table"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
