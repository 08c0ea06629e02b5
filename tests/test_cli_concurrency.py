"""Several agents' CLIs and the daemon write one store at once: no lost update, no "database is locked".

Four loops each run a fixed list of `python -m inboxd` commands one after
the other (so four CLI processes are alive at any moment), as two agents,
a supervisor and an admin, on the same three tickets, while the daemon
(`inboxd run`) files new mail that a feeder keeps appending to Dovecot
until the loops are done, some of it onto the shared ticket.  Afterwards
every command must have succeeded or been refused in one line, and the
store must hold exactly what the successful commands and the ingests did:
every tag reported added (minus those reported removed), one audit event per
success, one note per successful `note`, one message per appended mail, and
a ticket version equal to the number of changes.  Nothing here depends on
how fast the machine is: only outcomes are checked.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field

from sqlalchemy import text

from inboxd.testing.mail import make_mail
from tests.support import cli, db_count, list_json, start_daemon, stop_daemon, store_engine, wait_until, write_config

# Each loop's commands: every step of an agent's plan once, a supervisor's
# one and a half times (so a tag is both added and removed).
COMMANDS_PER_LOOP = 6
# The feeder appends at least this many mails, and goes on until the loops are done.
MIN_MAILS = 6

AGENTS = """
[[agents]]
name = "bob"
email = "bob@example.com"

[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"

[[agents]]
name = "dave"
email = "dave@example.com"
role = "admin"
"""


@dataclass
class Outcome:
    agent: str
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


@dataclass
class Worker:
    """One agent's loop of commands; `plan(i)` gives the i-th command's arguments."""

    agent: str
    plan: object
    outcomes: list[Outcome] = field(default_factory=list)

    def run(self, config) -> None:
        for i in range(COMMANDS_PER_LOOP):
            args = self.plan(i)
            proc = cli(config, "--as", self.agent, *args, check=False, timeout=180)
            self.outcomes.append(Outcome(self.agent, args, proc.returncode, proc.stdout, proc.stderr))


def supervisor_plan(prefix: str, priorities: tuple[str, str]):
    """Unique tags on the shared ticket (removing every third again), notes, priorities.

    Each supervisor alternates between two priorities of their own, so no
    `priority` command can be refused as "already" set.
    """

    def plan(i: int) -> tuple[str, ...]:
        step = i % 4
        if step == 0:
            return ("tag", "T-1000", f"{prefix}-{i}")
        if step == 1:
            return ("untag", "T-1000", f"{prefix}-{i - 1}") if i % 3 == 1 else ("tag", "T-1000", f"{prefix}-{i}")
        if step == 2:
            return ("note", "T-1000", "-m", f"{prefix} note {i}")
        return ("priority", "T-1001", priorities[(i // 4) % 2])
    return plan


def agent_plan(name: str, other: str):
    """take / hand on / unassign the same tickets as a colleague does, and try the supervisor's ticket."""
    def plan(i: int) -> tuple[str, ...]:
        return (
            ("take", "T-1001"),
            ("tag", "T-1001", f"{name}-{i}"),
            ("assign", "T-1001", other),
            ("unassign", "T-1001"),
            ("note", "T-1002", "-m", f"{name} note {i}"),
            ("tag", "T-1000", f"{name}-{i}"),       # carol's ticket: always refused
        )[i % 6]
    return plan


def test_agents_and_daemon_write_at_once_without_lost_updates(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          extra=AGENTS)
    for subject in ("Shared problem", "Second problem", "Third problem"):
        dovecot.append(imap_user, "INBOX", make_mail(subject=subject))
    cli(config, "run", "--once")
    cli(config, "--as", "carol", "take", "T-1000")
    assert [t["id"] for t in list_json(config, "--sort", "id")] == ["T-1000", "T-1001", "T-1002"]

    daemon = start_daemon(config, tmp_path / "daemon.log")
    loops_done = threading.Event()
    appended = {"all": 3, "replies": 0}

    def feed() -> None:
        # New tickets and customer replies onto the shared ticket, paced at
        # about three a second, for as long as the loops run (and at least MIN_MAILS).
        for i in itertools.count():
            if i >= MIN_MAILS and loops_done.is_set():
                return
            reply = i % 2 == 1
            subject = "Re: [T-1000] Shared problem" if reply else f"New problem {i}"
            dovecot.append(imap_user, "INBOX", make_mail(subject=subject, body=f"Mail {i}\n"))
            appended["all"] += 1
            appended["replies"] += reply
            loops_done.wait(0.3)

    workers = [Worker("carol", supervisor_plan("c", ("high", "urgent"))),
               Worker("dave", supervisor_plan("d", ("low", "normal"))),
               Worker("alice", agent_plan("alice", "bob")), Worker("bob", agent_plan("bob", "alice"))]
    feeder = threading.Thread(target=feed)
    loops = [threading.Thread(target=w.run, args=(config,)) for w in workers]
    try:
        feeder.start()
        for t in loops:
            t.start()
        for t in loops:
            t.join(timeout=900)
        loops_done.set()
        feeder.join(timeout=120)
        assert not feeder.is_alive() and not any(t.is_alive() for t in loops)
        wait_until(lambda: db_count(config, "select count(*) from sighting") == appended["all"], timeout=120,
                   what="the daemon to file every appended mail")
    finally:
        loops_done.set()
        assert stop_daemon(daemon) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "database is locked" not in log and "Traceback" not in log

    outcomes = [o for w in workers for o in w.outcomes]
    assert len(outcomes) == 4 * COMMANDS_PER_LOOP
    for o in outcomes:
        said = o.stdout + o.stderr
        assert "database is locked" not in said and "Traceback" not in said, (o.args, said)
        if o.code != 0:
            lines = o.stderr.strip().splitlines()
            assert o.code == 1 and len(lines) == 1 and lines[0].startswith("inboxd: "), (o.agent, o.args, o.stderr)
            assert "internal error" not in lines[0] and "changed meanwhile" not in lines[0], lines[0]
    ok = [o for o in outcomes if o.code == 0]
    print(f"{len(outcomes)} commands, {len(ok)} succeeded, {appended['all']} mails appended")
    # The supervisors' commands are all allowed and unambiguous: every one must have succeeded.
    assert all(o.code == 0 for o in outcomes if o.agent in ("carol", "dave")), \
        [(o.args, o.stderr) for o in outcomes if o.agent in ("carol", "dave") and o.code]
    # And the agents were refused on carol's ticket every time, naming the role.
    refused = [o for o in outcomes if o.agent in ("alice", "bob") and o.args[:2] == ("tag", "T-1000")]
    assert refused and all(o.code == 1 and "supervisor or admin role" in o.stderr for o in refused)

    def rows(sql: str, **params) -> list[tuple]:
        engine = store_engine(config)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    pk = {ref: pk for pk, ref in rows("select id, ref from ticket")}

    def succeeded(ref: str, command: str) -> list[Outcome]:
        return [o for o in ok if o.args[0] == command and o.args[1] == ref]

    def events(ref: str, action: str, actors=("alice", "bob", "carol", "dave")) -> int:
        marks = ",".join(f":actor{i}" for i in range(len(actors)))
        return db_count(config, f"select count(*) from event where ticket_id = :pk and action = :action"
                                f" and actor in ({marks})",
                        pk=pk[ref], action=action, **{f"actor{i}": a for i, a in enumerate(actors)})

    # No lost update: the shared ticket has every tag reported added and not reported removed.
    added = {o.args[2] for o in succeeded("T-1000", "tag")}
    removed = {o.args[2] for o in succeeded("T-1000", "untag")}
    [(tags_json, version, ingested)] = rows(
        "select tags, version, (select count(*) from event where ticket_id = t.id and action = 'message')"
        " from ticket t where ref = 'T-1000'")
    assert sorted(json.loads(tags_json)) == sorted(added - removed)
    # Every reply the feeder appended was filed on the shared ticket.
    assert ingested == appended["replies"] >= MIN_MAILS // 2
    # One audit event per successful command, one note message per successful note.
    for ref in ("T-1000", "T-1001", "T-1002"):
        for command in ("tag", "untag", "note", "priority", "take", "assign", "unassign"):
            before = 1 if (ref, command) == ("T-1000", "take") else 0  # carol's take before the race
            assert events(ref, command) == before + len(succeeded(ref, command)), (ref, command)
        notes = db_count(config, "select count(*) from message where ticket_id = :pk and kind = 'note'", pk=pk[ref])
        assert notes == len(succeeded(ref, "note"))
    # The version counts every change: creation, carol's take, each successful command, each ingest.
    changes = sum(len(succeeded("T-1000", c)) for c in ("tag", "untag", "note", "priority"))
    assert version == 1 + 1 + changes + ingested
    # Every appended mail became exactly one message.
    assert db_count(config, "select count(*) from message where kind = 'customer'") == appended["all"]
