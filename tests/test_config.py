"""Tests for inboxd.config: defaults, every error message form, secrets and the reference file."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest

from inboxd import config
from inboxd.config import (
    ConfigError, Secret, check_files, find_config_path, load_settings, parse_settings,
)

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "config" / "inboxd.reference.toml"

MINIMAL = """
[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "imap.example.com"
username = "support"
"""

TWO_MAILBOXES = MINIMAL + """
[[mailboxes]]
name = "billing"
address = "billing@example.com"
[mailboxes.imap]
host = "imap.example.com"
username = "billing"
"""


def load(tmp_path: Path, text: str) -> config.Settings:
    path = tmp_path / "inboxd.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- Defaults and resolution.

def test_minimal_config_gets_every_default(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    assert settings.path == tmp_path / "inboxd.toml"
    assert settings.store.url == f"sqlite:///{tmp_path}/inboxd.db"
    assert settings.store.data_dir == tmp_path / "var"
    assert settings.store.max_attachment_bytes == 25 * 1024 * 1024
    assert settings.tickets == config.TicketSettings("T-{seq}", 1000, "[{id}]")
    assert settings.log == config.LogSettings("info", None)
    assert settings.smtp is None
    assert settings.agents == ()
    assert dict(settings.policies.sla) == {}
    assert dict(settings.macros) == {}
    mailbox = settings.mailbox("support")
    assert mailbox.display_name == "Support"
    assert mailbox.language == "en"
    assert mailbox.smtp is None
    assert mailbox.imap == config.ImapSettings(
        host="imap.example.com", port=993, security="tls", username="support", password=None,
        folders=("INBOX",), sent_folder=None, ca_file=None, timeout=30.0, batch_size=200,
        idle=True, poll_interval=60.0,
    )


@pytest.mark.parametrize("security, port", [("tls", 993), ("starttls", 143), ("none", 143)])
def test_imap_port_default_follows_security(tmp_path: Path, security: str, port: int) -> None:
    text = MINIMAL + f'security = "{security}"\n'
    assert load(tmp_path, text).mailboxes[0].imap.port == port


@pytest.mark.parametrize("security, port", [("tls", 465), ("starttls", 587), ("none", 25)])
def test_smtp_port_default_follows_security(tmp_path: Path, security: str, port: int) -> None:
    text = f'[smtp]\nhost = "smtp.example.com"\nsecurity = "{security}"\n' + MINIMAL
    smtp = load(tmp_path, text).smtp
    assert smtp is not None and smtp.port == port and smtp.username is None


def test_smtp_security_defaults_to_starttls(tmp_path: Path) -> None:
    smtp = load(tmp_path, '[smtp]\nhost = "smtp.example.com"\n' + MINIMAL).smtp
    assert smtp is not None and (smtp.security, smtp.port) == ("starttls", 587)


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir("/")
    text = """
[store]
url = "sqlite:///db/x.db?timeout=5"
data_dir = "spool"
[log]
file = "logs/inboxd.log"
""" + MINIMAL + 'ca_file = "certs/ca.pem"\npassword_file = "secrets/pw"\n'
    settings = load(tmp_path, text)
    imap = settings.mailboxes[0].imap
    assert settings.store.url == f"sqlite:///{tmp_path}/db/x.db?timeout=5"
    assert settings.store.data_dir == tmp_path / "spool"
    assert settings.log.file == tmp_path / "logs" / "inboxd.log"
    assert imap.ca_file == tmp_path / "certs" / "ca.pem"
    assert imap.password == Secret(file=tmp_path / "secrets" / "pw")


@pytest.mark.parametrize("url", [
    "sqlite:////abs/inboxd.db", "sqlite://", "sqlite:///:memory:", "sqlite+pysqlite:////abs/inboxd.db",
])
def test_absolute_and_non_file_urls_are_kept(tmp_path: Path, url: str) -> None:
    settings = load(tmp_path, f'[store]\nurl = "{url}"\n' + MINIMAL)
    assert settings.store.url == url


def test_store_url_without_its_driver_or_of_an_unknown_kind_is_refused_at_load(tmp_path: Path) -> None:
    # A driver that is certainly not installed, rather than psycopg, which a
    # machine may well have.
    message = error(tmp_path, '[store]\nurl = "mysql+mysqldb://u@db.example.com/inboxd"\n' + MINIMAL)
    assert message.startswith("inboxd.toml: store.url: the mysqldb driver for mysql is not installed")
    assert '"MySQLdb"' in message
    message = error(tmp_path, '[store]\nurl = "nosuchdb://db.example.com/inboxd"\n' + MINIMAL)
    assert message.startswith('inboxd.toml: store.url: unknown kind of database "nosuchdb"')


def test_empty_strings_mean_none(tmp_path: Path) -> None:
    imap = load(tmp_path, MINIMAL + 'sent_folder = ""\nca_file = ""\n').mailboxes[0].imap
    assert imap.sent_folder is None and imap.ca_file is None


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mailboxes[0].imap.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.store = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.policies.sla["standard"] = None  # type: ignore[index]


# --- The desk's sections are read in the same pass, and fail the load, not a later step.

DESK_EXAMPLE = """
[[agents]]
name = "alice"
email = "alice@example.com"

[[calendars]]
name = "office"
timezone = "Asia/Shanghai"

[[sla]]
name = "standard"
first_response = "4h"
calendar = "office"
priority = ["normal"]

[[teams]]
name = "billing"
agents = ["alice"]

[[customer_groups]]
name = "vip"
members = ["@vip.example"]

[[rules]]
name = "invoices"
if = { subject = ["invoice"] }
then = { team = "billing", assign = "round-robin" }

[scheduler]
interval = "10s"

[csat]
delay = "2h"

[reports]
timezone = "Asia/Shanghai"

[[macros]]
name = "thanks"
body = "Thank you, {{ ticket.requester.name }}."
status = "solved"
assign = "alice"
"""


def test_desk_sections_are_parsed_at_load_and_frozen(tmp_path: Path) -> None:
    from types import MappingProxyType

    settings = load(tmp_path, MINIMAL + DESK_EXAMPLE)
    policies = settings.policies
    assert policies.sla["standard"].calendar.name == "office"
    assert [r.name for r in policies.rules.rules] == ["invoices"]
    assert policies.rules.teams == {"billing": ("alice",)}
    assert policies.scheduler.interval.total_seconds() == 10
    assert policies.csat.delay.total_seconds() == 7200
    assert settings.reports.timezone.key == "Asia/Shanghai"
    assert settings.macros["thanks"].status == "solved" and settings.macros["thanks"].assign == "alice"
    for mapping in (policies.sla, policies.calendars, settings.macros):
        assert isinstance(mapping, MappingProxyType)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policies.rules = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.macros["x"] = None  # type: ignore[index]


def test_without_desk_sections_the_defaults_apply(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    assert dict(settings.policies.sla) == {} and settings.policies.rules.rules == ()
    assert settings.policies.csat.secret_file == tmp_path / "var" / "csat.key"
    assert dict(settings.macros) == {}
    assert settings.reports.timezone.key == "UTC"


@pytest.mark.parametrize("section, problem", [
    # [[rules]]
    ('[[rules]]\nname = "r"\nmatch = "x"\nthen = { tags = ["t"] }',
     'rules[0].match: unknown key "match"'),
    ('[[rules]]\nname = "r"\nthen = { assign = "zoe" }',
     'rules[0].then.assign: unknown agent "zoe"; known: "alice", "least-loaded", "round-robin"'),
    ('[[rules]]\nname = "r"\nif = { subject_regex = "(" }\nthen = { tags = ["t"] }',
     'rules[0].if.subject_regex: invalid regular expression "(": missing ), unterminated subpattern'
     ' at position 0'),
    ('[rules]\nname = "r"', 'rules: expected an array of tables ([[rules]]), got a table'),
    ('[[teams]]\nname = "t"\nagents = ["zoe"]', 'teams[0].agents[0]: unknown agent "zoe"; known: "alice"'),
    ('[[customer_groups]]\nname = "g"\nmembers = ["nobody"]',
     'customer_groups[0].members[0]: expected an address or "@domain", got "nobody"'),
    # [csat]
    ('[csat]\ndelay = "soon"',
     'csat.delay: expected a duration such as "90s", "15m", "4h" or "2d", got "soon"'),
    ('[csat]\nscale = [{ en = "Good" }]', 'csat.scale: must list at least two levels, best first, got 1'),
    ('[csat]\nenable = true', 'csat.enable: unknown key "enable"; did you mean "enabled"?'),
    # [[sla]] and [[calendars]]
    ('[[sla]]\nname = "gold"\nfirst_response = "4h"\ncalendar = "office"',
     'sla[0].calendar: unknown calendar "office"; the calendars are "24x7"'),
    ('[[sla]]\nname = "gold"',
     'sla[0]: give at least one of first_response, next_response or resolution'),
    ('[sla.urgent]\nfirst_response = "1h"', 'sla: expected an array of tables ([[sla]]), got a table'),
    ('[[calendars]]\nname = "office"\ntimezone = "Mars/Base"',
     'calendars[0].timezone: unknown time zone "Mars/Base"; expected an IANA name such as "Asia/Shanghai"'),
    # [scheduler] and [reports]
    ('[scheduler]\ndigest_time = "8am"',
     'scheduler.digest_time: expected a time of day such as "08:00", got "8am"'),
    ('[reports]\ntimezone = "Mars/Base"', 'reports.timezone: unknown time zone "Mars/Base"'),
    # [[macros]]
    ('[[macros]]\nname = "m"\nbody = "Hi"\nstatus = "done"',
     'macros[0].status: must be one of "new", "open", "pending", "solved", "closed", got "done"'),
    ('[[macros]]\nname = "m"\nbody = "Hi"\nassign = "zoe"', 'macros[0].assign: unknown agent "zoe"'),
    ('[[macros]]\nname = "m"', 'macros[0].body: give exactly one of body (inline) or template'
                               ' (a file under templates/macros/)'),
    ('[[macros]]\nname = "m"\nbody = "Hi"\n[[macros]]\nname = "m"\nbody = "Hello"',
     'macros[1].name: duplicate macro name "m"'),
    ('[[macros]]\nbody = "Hi"', 'macros[0].name: missing required key'),
    ('[[macros]]\nname = "m"\nbody = "Hi"\ntags = "x"', 'macros[0].tags: expected a list of strings, got "x"'),
])
def test_a_broken_desk_section_fails_the_load_with_file_key_and_reason(
        tmp_path: Path, section: str, problem: str) -> None:
    agent = '[[agents]]\nname = "alice"\nemail = "alice@example.com"\n'
    assert error(tmp_path, MINIMAL + agent + section + "\n") == f"inboxd.toml: {problem}"


def test_lookups(tmp_path: Path) -> None:
    text = '[smtp]\nhost = "global.example.com"\n' + TWO_MAILBOXES + """
[mailboxes.smtp]
host = "billing-smtp.example.com"

[[agents]]
name = "alice"
email = "Alice@Example.com"
"""
    settings = load(tmp_path, text)
    support, billing = settings.mailboxes
    assert settings.smtp_for(support).host == "global.example.com"
    assert settings.smtp_for(billing).host == "billing-smtp.example.com"
    assert settings.agent("alice").email == "Alice@Example.com"
    assert settings.agent("nobody") is None
    assert settings.agent_by_email("alice@example.COM").name == "alice"
    assert settings.agent_by_email("bob@example.com") is None
    with pytest.raises(LookupError, match='no mailbox named "sales"; known mailboxes: support, billing'):
        settings.mailbox("sales")


# --- Error messages: each one line, "<file>: <key path>: <problem>".

def test_the_issue_example_message(tmp_path: Path) -> None:
    text = TWO_MAILBOXES + 'port = "abc"\n'
    assert error(tmp_path, text) == (
        'inboxd.toml: mailboxes[1].imap.port: expected an integer, got "abc"'
    )


@pytest.mark.parametrize("extra, expected", [
    ("port = true", "mailboxes[0].imap.port: expected an integer, got true"),
    ("port = 70000", "mailboxes[0].imap.port: must be between 1 and 65535, got 70000"),
    ("port = 0", "mailboxes[0].imap.port: must be between 1 and 65535, got 0"),
    ("batch_size = 5001", "mailboxes[0].imap.batch_size: must be between 1 and 5000, got 5001"),
    ('security = "ssl"',
     'mailboxes[0].imap.security: must be one of "tls", "starttls", "none", got "ssl"'),
    ("idle = 1", "mailboxes[0].imap.idle: expected true or false, got 1"),
    ('folders = "INBOX"', 'mailboxes[0].imap.folders: expected a list of strings, got "INBOX"'),
    ("folders = [1]", "mailboxes[0].imap.folders: expected a list of strings, got [1]"),
    ("folders = []", "mailboxes[0].imap.folders: must name at least one folder"),
    ('folders = ["INBOX", "Spam", "INBOX"]',
     'mailboxes[0].imap.folders[2]: duplicate folder "INBOX"'),
    ("timeout = 0", "mailboxes[0].imap.timeout: must be a positive number, got 0"),
    ('poll_interval = "1m"', 'mailboxes[0].imap.poll_interval: expected a number, got "1m"'),
    ("sent_folder = 5", "mailboxes[0].imap.sent_folder: expected a string, got 5"),
    ("prot = 993", 'mailboxes[0].imap.prot: unknown key "prot"; did you mean "port"?'),
    ("zzz = 1", 'mailboxes[0].imap.zzz: unknown key "zzz"'),
    ('password = "hunter2"',
     "mailboxes[0].imap.password: plain-text passwords are not accepted;"
     " use password_env, password_file or password_command"),
    ('password_env = "A"\npassword_command = "pass x"',
     "mailboxes[0].imap.password_command: conflicts with password_env;"
     " give only one password source"),
    ('password_command = "pass \'x"',
     "mailboxes[0].imap.password_command: cannot be split into a command: No closing quotation"),
])
def test_imap_errors(tmp_path: Path, extra: str, expected: str) -> None:
    assert error(tmp_path, MINIMAL + extra + "\n") == f"inboxd.toml: {expected}"


def test_plain_password_message_never_contains_the_password(tmp_path: Path) -> None:
    message = error(tmp_path, MINIMAL + 'password = "hunter2"\n')
    assert "hunter2" not in message


@pytest.mark.parametrize("text, expected", [
    ("", "mailboxes: at least one [[mailboxes]] entry is required"),
    ('[mailboxes]\nname = "x"\n',
     "mailboxes: expected an array of tables ([[mailboxes]]), got a table"),
    ('[stor]\nurl = "x"\n' + MINIMAL, 'stor: unknown key "stor"; did you mean "store"?'),
    ('[[mailboxes]]\naddress = "a@example.com"\n', "mailboxes[0].name: missing required key"),
    ('[[mailboxes]]\nname = "a"\n', "mailboxes[0].address: missing required key"),
    ('[[mailboxes]]\nname = "a"\naddress = "a@example.com"\n',
     "mailboxes[0].imap: missing required key"),
    ('[[mailboxes]]\nname = "a"\naddress = "a@example.com"\n[mailboxes.imap]\nusername = "u"\n',
     "mailboxes[0].imap.host: missing required key"),
    ('[[mailboxes]]\nname = "a"\naddress = "a@example.com"\n[mailboxes.imap]\nhost = "h"\n',
     "mailboxes[0].imap.username: missing required key"),
    ('[smtp]\nport = 25\n' + MINIMAL, "smtp.host: missing required key"),
    ('[smtp]\nhost = "h"\npassword_env = "X"\n' + MINIMAL,
     "smtp.password_env: a password source is given but no username"),
    ('[smtp]\nhost = "h"\nsecurity = "ssl"\n' + MINIMAL,
     'smtp.security: must be one of "tls", "starttls", "none", got "ssl"'),
    ("smtp = 5\n" + MINIMAL, "smtp: expected a table, got 5"),
    ('[store]\nurl = "inboxd.db"\n' + MINIMAL,
     'store.url: expected a database URL such as "sqlite:///inboxd.db", got "inboxd.db"'),
    ("[store]\nmax_attachment_bytes = -1\n" + MINIMAL,
     "store.max_attachment_bytes: must be at least 0, got -1"),
    ('[tickets]\nid_format = "T-{id}"\n' + MINIMAL,
     'tickets.id_format: must be a format using only {seq}, got "T-{id}"'),
    ('[tickets]\nid_format = "T-1"\n' + MINIMAL, 'tickets.id_format: must contain {seq}, got "T-1"'),
    ('[tickets]\nid_format = "T-{seq:q}"\n' + MINIMAL,
     'tickets.id_format: must be a format using only {seq}, got "T-{seq:q}"'),
    ('[tickets]\ntag_format = "[ticket]"\n' + MINIMAL,
     'tickets.tag_format: must contain {id}, got "[ticket]"'),
    ('[log]\nlevel = "verbose"\n' + MINIMAL,
     'log.level: must be one of "debug", "info", "warning", "error", got "verbose"'),
    (MINIMAL.replace('name = "support"', 'name = "Support Desk"', 1),
     'mailboxes[0].name: must match [a-z0-9_-]+ (lower case, no spaces), got "Support Desk"'),
    (MINIMAL.replace('"support@example.com"', '"support"'),
     'mailboxes[0].address: expected an email address, got "support"'),
    (MINIMAL.replace('name = "support"', 'name = "support"\nlanguage = "fr"', 1),
     'mailboxes[0].language: must be one of "en", "zh", "zh-Hant", got "fr"'),
    (TWO_MAILBOXES.replace('name = "billing"', 'name = "support"'),
     'mailboxes[1].name: duplicate mailbox name "support" (also mailboxes[0])'),
    (TWO_MAILBOXES.replace('"billing@example.com"', '"SUPPORT@example.com"'),
     'mailboxes[1].address: duplicate mailbox address "SUPPORT@example.com" (also mailboxes[0])'),
])
def test_structure_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text) == f"inboxd.toml: {expected}"


AGENT = '\n[[agents]]\nname = "{name}"\nemail = "{email}"\n'


@pytest.mark.parametrize("agents, expected", [
    (AGENT.format(name="alice", email="a@example.com") + AGENT.format(name="alice", email="b@x.org"),
     'agents[1].name: duplicate agent name "alice" (also agents[0])'),
    (AGENT.format(name="alice", email="a@example.com") + AGENT.format(name="bob", email="A@EXAMPLE.com"),
     'agents[1].email: duplicate agent email "A@EXAMPLE.com" (also agents[0])'),
    (AGENT.format(name="alice", email="Support@Example.com"),
     'agents[0].email: "Support@Example.com" is the address of mailbox "support";'
     " an agent must have a different address or replies would loop"),
    (AGENT.format(name="Alice", email="a@example.com"),
     'agents[0].name: must match [a-z0-9_.-]+ (lower case, no spaces), got "Alice"'),
    (AGENT.format(name="alice", email="a@example.com") + 'role = "boss"\n',
     'agents[0].role: must be one of "agent", "supervisor", "admin", got "boss"'),
    (AGENT.format(name="alice", email="a@example.com") + 'notify = "some"\n',
     'agents[0].notify: must be one of "all", "assigned", "none", got "some"'),
    (AGENT.format(name="alice", email="a@example.com") + 'tier = "1"\n',
     'agents[0].tier: expected an integer, got "1"'),
    (AGENT.format(name="alice", email="a@example.com") + 'teams = "billing"\n',
     'agents[0].teams: expected a list of strings, got "billing"'),
    ('\n[[agents]]\nemail = "a@example.com"\n', "agents[0].name: missing required key"),
    ('\n[[agents]]\nname = "a"\n', "agents[0].email: missing required key"),
    (AGENT.format(name="alice", email="a@example.com") + 'team = ["x"]\n',
     'agents[0].team: unknown key "team"; did you mean "teams"?'),
])
def test_agent_errors(tmp_path: Path, agents: str, expected: str) -> None:
    assert error(tmp_path, MINIMAL + agents) == f"inboxd.toml: {expected}"


def test_agent_fields(tmp_path: Path) -> None:
    text = MINIMAL + AGENT.format(name="a.b-c_1", email="ab@example.com") + (
        'role = "supervisor"\nteams = ["billing", "vip"]\ntier = 2\nnotify = "all"\n'
    )
    assert load(tmp_path, text).agents == (
        config.AgentSettings("a.b-c_1", "ab@example.com", "supervisor", ("billing", "vip"), 2, "all"),
    )


def test_format_specs_are_allowed(tmp_path: Path) -> None:
    tickets = load(tmp_path, '[tickets]\nid_format = "{seq:05d}"\n' + MINIMAL).tickets
    assert tickets.id_format.format(seq=42) == "00042"


def test_toml_syntax_error_is_one_clean_line(tmp_path: Path) -> None:
    message = error(tmp_path, '[store]\n\nurl = sqlite\n')
    assert message == "inboxd.toml: line 3, column 7: Invalid value"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path}: no such file"


def test_parse_settings_takes_a_dict(tmp_path: Path) -> None:
    data = {"mailboxes": [{"name": "s", "address": "s@example.com",
                           "imap": {"host": "h", "username": "u", "port": "abc"}}]}
    with pytest.raises(ConfigError, match=r"^x\.toml: mailboxes\[0\]\.imap\.port: "):
        parse_settings(data, tmp_path / "x.toml")


def test_check_files_reports_missing_ca_files(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL + 'ca_file = "ca.pem"\n')
    assert check_files(settings) == [
        f"inboxd.toml: mailboxes[0].imap.ca_file: no such file: {tmp_path / 'ca.pem'}"
    ]
    (tmp_path / "ca.pem").write_text("pem")
    assert check_files(settings) == []


# --- Secrets.

def test_secret_from_env(monkeypatch) -> None:
    monkeypatch.setenv("INBOXD_TEST_PW", "s3cret")
    assert Secret(env="INBOXD_TEST_PW").reveal() == "s3cret"
    monkeypatch.delenv("INBOXD_TEST_PW")
    with pytest.raises(ConfigError, match="^environment variable INBOXD_TEST_PW is not set$"):
        Secret(env="INBOXD_TEST_PW").reveal()


def test_secret_failure_names_its_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("INBOXD_TEST_PW", raising=False)
    secret = load(tmp_path, MINIMAL + 'password_env = "INBOXD_TEST_PW"\n').mailboxes[0].imap.password
    with pytest.raises(ConfigError) as caught:
        secret.reveal()
    assert str(caught.value) == (
        "inboxd.toml: mailboxes[0].imap.password_env: environment variable INBOXD_TEST_PW is not set"
    )


def test_secret_from_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("  two words \n")
    assert Secret(file=path).reveal() == "  two words "
    path.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        Secret(file=path).reveal()
    with pytest.raises(ConfigError, match="cannot read password file .*missing: No such file"):
        Secret(file=tmp_path / "missing").reveal()


def test_secret_from_command(tmp_path: Path) -> None:
    command = f"{sys.executable} -c \"print('  s3cret  ')\""
    assert Secret(command=command).reveal() == "s3cret"


def test_secret_command_is_not_run_by_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    secret = Secret(command=f"echo hi; touch {marker}")
    # echo prints its arguments literally, so the ";" reached it as text.
    assert secret.reveal() == f"hi; touch {marker}"
    assert not marker.exists()


@pytest.mark.parametrize("command, problem", [
    (f"{sys.executable} -c \"print('s3' + 'cret'); raise SystemExit(3)\"", "exited with status 3"),
    ("/nonexistent/pass show x", "/nonexistent/pass not found"),
    (f"{sys.executable} -c \"pass\"", "printed nothing"),
])
def test_secret_command_failures(command: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Secret(command=command).reveal()
    assert problem in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_secret_repr_never_shows_the_value(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("INBOXD_TEST_PW", "s3cret")
    (tmp_path / "pw").write_text("s3cret\n")
    printer = f"{sys.executable} -c \"print('s3' + 'cret')\""
    for secret in (Secret(env="INBOXD_TEST_PW"), Secret(file=tmp_path / "pw"),
                   Secret(command=printer)):
        assert secret.reveal() == "s3cret"
        assert "s3cret" not in repr(secret)
        assert "s3cret" not in str(secret)
    assert repr(Secret(env="INBOXD_TEST_PW")) == "Secret(env='INBOXD_TEST_PW')"


def test_secret_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Secret()
    with pytest.raises(ConfigError):
        Secret(env="A", command="b")


def test_secrets_are_not_read_at_load_time(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("INBOXD_TEST_PW", raising=False)
    text = MINIMAL + 'password_command = "/nonexistent/pass"\n'
    assert load(tmp_path, text).mailboxes[0].imap.password == Secret(command="/nonexistent/pass")


# --- Finding the file.

def test_find_config_path_precedence(tmp_path: Path, monkeypatch) -> None:
    explicit, from_env, local = (tmp_path / n for n in ("explicit.toml", "env.toml", "inboxd.toml"))
    for path in (explicit, from_env, local):
        path.write_text(MINIMAL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INBOXD_CONFIG", str(from_env))
    assert find_config_path(explicit) == explicit
    assert find_config_path(None) == from_env
    monkeypatch.delenv("INBOXD_CONFIG")
    assert find_config_path(None) == local
    local.unlink()
    with pytest.raises(ConfigError, match="^inboxd.toml: no such file$"):
        find_config_path(None)
    with pytest.raises(ConfigError, match="missing.toml: no such file$"):
        find_config_path(tmp_path / "missing.toml")


# --- The shipped files.

def test_repo_demo_config_loads(monkeypatch) -> None:
    monkeypatch.chdir("/")
    settings = load_settings(REPO / "inboxd.toml")
    assert [m.name for m in settings.mailboxes] == ["support", "billing"]
    assert settings.mailbox("billing").language == "zh"
    assert settings.mailbox("support").imap.sent_folder == "Sent"
    assert settings.mailbox("support").imap.ca_file == REPO / "demo-run" / "dovecot" / "tls" / "cert.pem"
    assert settings.store.url == f"sqlite:///{REPO}/demo-run/inboxd.db"
    assert settings.smtp == config.SmtpSettings("127.0.0.1", 2525, "none")
    assert [(a.name, a.role) for a in settings.agents] == [
        ("alice", "agent"), ("bob", "agent"), ("carol", "supervisor"), ("dave", "admin"),
    ]


def test_reference_file_loads() -> None:
    settings = load_settings(REFERENCE)
    assert settings.mailbox("support").imap.password == Secret(env="INBOXD_SUPPORT_PASSWORD")
    assert settings.agent("alice").teams == ("billing",)


def _documented_keys() -> set[tuple[str, str]]:
    """(section, key) for every key the reference file mentions, commented out or not."""
    found = set()
    section = ""
    for line in REFERENCE.read_text().splitlines():
        header = re.match(r"#?\s*\[\[?([\w.]+)\]\]?\s*$", line)
        if header:
            section = header[1]
            continue
        key = re.match(r"#?\s*(\w+)\s*=", line)
        if key:
            found.add((section, key[1]))
    return found


def test_every_accepted_key_is_documented_and_nothing_else() -> None:
    from inboxd.desk import confirm, csat, fields, macros, policies, routing, sla

    accepted = {(section, key) for section, keys in config.KNOWN_KEYS.items() for key in keys}
    # The desk's policy sections are declared by the modules that read them.
    declared = {"calendars": sla.CALENDAR_KEYS, "sla": sla.SLA_KEYS, "rules": routing.RULE_KEYS,
                "customer_groups": routing.GROUP_KEYS, "teams": routing.TEAM_KEYS,
                "scheduler": policies.SCHEDULER_KEYS, "csat": csat.CSAT_KEYS, "macros": macros.MACRO_KEYS,
                "confirm": confirm.CONFIRM_KEYS, "fields": fields.FIELD_KEYS}
    # Every desk section the loader accepts is read (and validated) by one of them.
    assert set(declared) == set(config.DESK_TOP_KEYS)
    for section, keys in declared.items():
        accepted |= {(section, key) for key in keys}
    # Sub-tables appear as section headers, not as "key =" lines.
    accepted -= {("mailboxes", "imap"), ("mailboxes", "smtp"), ("mailboxes", "oauth")}
    documented = _documented_keys()
    assert accepted - documented == set()
    assert documented - accepted == set()
    text = REFERENCE.read_text()
    for section in config.TOP_KEYS:
        assert re.search(rf"^#?\s*\[\[?{section}\]\]?", text, re.M), section
    for section in config.DESK_TOP_KEYS:
        assert re.search(rf"^#?\s*\[\[?{section}\]\]?", text, re.M), section


def test_a_loop_section_is_refused_with_where_the_budget_lives(tmp_path: Path) -> None:
    message = error(tmp_path, MINIMAL + "\n[loop]\nper_hour = 3\n")
    assert message == ("inboxd.toml: loop: [loop] is not a section; the auto-reply budget is"
                       " [autoreply] per_hour and per_day")


def test_reports_timezone_is_checked_at_load(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL + '\n[reports]\ntimezone = "Asia/Shanghai"\n')
    assert settings.reports.timezone.key == "Asia/Shanghai"
    for text, problem in (('timezone = "Mars/Base"', 'reports.timezone: unknown time zone "Mars/Base"'),
                          ('tz = "UTC"', 'reports.tz: unknown key "tz"')):
        assert error(tmp_path, MINIMAL + f"\n[reports]\n{text}\n") == f"inboxd.toml: {problem}"


def test_the_readme_walk_through_names_real_modules_in_one_table() -> None:
    readme = (REPO / "README.md").read_text()
    walk = readme[readme.index("## How one email travels"):readme.index("## Guarantees, and how they are kept")]
    for path in set(re.findall(r"`(inboxd/[\w/]+(?:\.py)?)/?`", walk)):
        assert (REPO / path).exists(), path
    # The step table is one block of rows: a blank line would end it early.
    start = walk.index("| step | module | job |")
    table = walk[start:walk.index("\n\n", start)].splitlines()
    assert [row.split("|")[1].strip() for row in table[2:]][0] == "1"
    assert table[-1].startswith("| 8 |")
    # The store's modules are listed by their names inside inboxd/store/.
    store = walk[walk.index("The store (`inboxd/store/`)"):walk.index("Around the flow:")]
    for name in re.findall(r"`(\w+\.py)`", store):
        assert (REPO / "inboxd" / "store" / name).is_file(), name
    layout = (REPO / "docs" / "layout.md").read_text()
    for path in set(re.findall(r"`((?:sync|mail|desk|store|outbound|reports|cli)/\w+\.py)`", layout)):
        assert (REPO / "inboxd" / path).is_file(), path
