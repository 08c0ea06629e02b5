"""Whether the daemon is healthy: every mailbox synced within its interval and the store answered.

A pure decision over what the store says of each folder, with `now` passed
in; `inboxd health` (and later `/healthz`) print it.  The rules:

* the store must answer, or nothing is healthy;
* every configured folder (not the Sent folder, whose failure is only a
  warning, as in `inboxd status`) must have synced, must not be failing, and
  its last sync must be at most its bound old;
* the bound is IDLE_BOUND when the poller idles on the mailbox's only
  folder (it then syncs at least every 25 minutes, when IDLE is renewed),
  else poll_interval × POLL_FACTOR, and never less than MIN_BOUND.

A folder's last sync is the later of its last successful pass and its
checkpoint's time: a long first sync moves the checkpoint with every batch,
so a big adoption is not reported stale while it makes progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from inboxd.config import MailboxSettings

# inboxd.sync.imap renews IDLE every 25 minutes and syncs again then; 5 minutes of slack.
IDLE_BOUND = timedelta(minutes=30)
# A polled folder may miss two polls (a slow server, a long batch) before it is stale.
POLL_FACTOR = 3
MIN_BOUND = timedelta(minutes=2)


@dataclass(frozen=True)
class FolderFacts:
    """What the store says of one folder (all None/False before its first sync)."""

    last_ok_at: datetime | None = None
    checkpoint_at: datetime | None = None
    failing: bool = False
    error: str = ""


@dataclass(frozen=True)
class FolderHealth:
    folder: str
    ok: bool
    reason: str
    last_sync: datetime | None
    bound: timedelta


@dataclass(frozen=True)
class MailboxHealth:
    name: str
    ok: bool
    reasons: tuple[str, ...]
    folders: tuple[FolderHealth, ...]


@dataclass(frozen=True)
class Health:
    ok: bool
    store_error: str | None
    mailboxes: tuple[MailboxHealth, ...] = field(default_factory=tuple)


def folders_of(mailbox: MailboxSettings) -> tuple[str, ...]:
    """The configured folders, then the Sent folder: the order the poller syncs them in."""
    sent = mailbox.imap.sent_folder
    return mailbox.imap.folders + ((sent,) if sent and sent not in mailbox.imap.folders else ())


def sync_bound(mailbox: MailboxSettings) -> timedelta:
    """How old a folder's last sync may be before the mailbox is unhealthy."""
    if mailbox.imap.idle and len(folders_of(mailbox)) == 1:
        return IDLE_BOUND
    return max(timedelta(seconds=mailbox.imap.poll_interval * POLL_FACTOR), MIN_BOUND)


def _folder(folder: str, facts: FolderFacts | None, bound: timedelta, now: datetime) -> FolderHealth:
    facts = facts or FolderFacts()
    times = [t for t in (facts.last_ok_at, facts.checkpoint_at) if t is not None]
    last = max(times) if times else None
    if facts.failing:
        return FolderHealth(folder, False, f"{folder}: failing: {facts.error}", last, bound)
    if last is None:
        return FolderHealth(folder, False, f"{folder}: never synced", last, bound)
    age = now - last
    if age > bound:
        return FolderHealth(folder, False, f"{folder}: last synced {_span(age)} ago, more than {_span(bound)}",
                            last, bound)
    return FolderHealth(folder, True, "", last, bound)


def assess(mailboxes: tuple[MailboxSettings, ...], facts: dict[tuple[str, str], FolderFacts],
           store_error: str | None, now: datetime) -> Health:
    """Healthy or not, with the reasons per mailbox; `store_error` is why the store did not answer (else None)."""
    if store_error is not None:
        reason = f"store: {store_error}"
        return Health(False, store_error, tuple(MailboxHealth(mb.name, False, (reason,), ()) for mb in mailboxes))
    out = []
    for mb in mailboxes:
        bound = sync_bound(mb)
        folders = tuple(_folder(f, facts.get((mb.name, f)), bound, now) for f in folders_of(mb))
        # The Sent folder only teaches replies from mail clients: its trouble is a warning, as in `inboxd status`.
        bad = tuple(f.reason for f in folders if not f.ok and f.folder in mb.imap.folders)
        out.append(MailboxHealth(mb.name, not bad, bad, folders))
    return Health(all(m.ok for m in out), None, tuple(out))


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
