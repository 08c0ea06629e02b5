"""The scheduled backup's decisions: is one due, what it is called, which old ones to delete.

Pure functions of the last backup's time, the `[backup]` settings and `now`;
`inboxd.desk.duties` applies them (claim, take, record, rotate) through
`inboxd.store.backup`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# A claim this old belongs to a daemon that died while taking its backup; another pass takes it over.
STALE_CLAIM = timedelta(hours=6)
# Scheduled backups are folders named by their UTC time, so that names sort as times do.
NAME = re.compile(r"inboxd-\d{8}T\d{6}Z")
# A backup is written under this name and renamed when complete (inboxd.store.backup).
PARTIAL = re.compile(r"\.inboxd-\d{8}T\d{6}Z\.partial-\d+")


def is_due(last: datetime | None, every: timedelta, now: datetime) -> bool:
    """Whether a backup is due: there was none, or the last is `every` old."""
    return last is None or now - last >= every


def claim_key(last: datetime | None) -> str:
    """The claim's key names the backup it follows, so only one daemon takes the next one."""
    return "after:" + ("none" if last is None else last.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def backup_name(now: datetime) -> str:
    """The folder of the backup taken at `now`: inboxd-20261130T020000Z."""
    return now.astimezone(UTC).strftime("inboxd-%Y%m%dT%H%M%SZ")


def to_delete(names: list[str], keep: int) -> list[str]:
    """The scheduled backups beyond the newest `keep`, oldest first; other names are never touched."""
    ours = sorted(name for name in names if NAME.fullmatch(name))
    return ours[:max(len(ours) - keep, 0)]


def leftovers(names: list[str]) -> list[str]:
    """Half-written scheduled backups of a daemon that died while writing them.

    Asked only by the holder of the claim, after its own backup is complete:
    no other daemon can be writing one then.
    """
    return sorted(name for name in names if PARTIAL.fullmatch(name))
