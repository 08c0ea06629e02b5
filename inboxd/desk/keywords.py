"""The ticket's state as IMAP keywords (or Gmail labels): what a message should carry, and the change to get there.

Pure: `wanted(state, now)` is the set of names a customer's message of the
ticket should carry, `plan(written, wanted)` the keywords to add and to
remove given what inboxd wrote before.  Only our own names are ever removed
(`T-<number>`, `$inboxd-...`, `inboxd/...`), so an agent's own keywords and
the system flags are never touched.  The IMAP edge (inboxd/sync/imap.py)
sends the change; the store (inboxd/store/writeback.py) remembers what was
written.

Names (kept exactly as issue 16 gives them, the Thunderbird guide uses them):

    T-1000                  the ticket's ref
    $inboxd-open            status new or open (new is open work nobody answered yet)
    $inboxd-pending         status pending
    $inboxd-solved          status solved
    $inboxd-closed          status closed (a merged ticket is closed too)
    $inboxd-mine-<agent>    the assignee
    $inboxd-overdue         an SLA promise is broken (as `inboxd list --overdue` decides)
    $inboxd-<tag>           each tag, e.g. $inboxd-vip

A keyword is an IMAP atom: a tag or agent name is lower-cased, every ASCII
character outside [a-z0-9_.+-] becomes "_", and each run of non-ASCII
characters is written in IMAP's modified UTF-7 (RFC 3501 5.1.3, as folder
names are and as Thunderbird names the keys of non-ASCII tags), so "退款"
becomes "$inboxd-&kABrPg-".  A tag whose name is one of ours (open, pending,
solved, closed, overdue, mine-...) gets "tag-" in front.  A keyword longer
than KEYWORD_MAX (Dovecot's default mail_max_keyword_length) is cut and
ends with eight hex digits of the SHA-256 of the whole name, so it stays
distinct.

Gmail labels (`wanted(..., gmail=True)`) are the same names under "inboxd/"
without the "$inboxd-": inboxd/open, inboxd/mine-alice, inboxd/vip,
inboxd/T-1000; tags keep their own text (labels may be any Unicode; a "/"
would nest, so it becomes "-").
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from inboxd.vocabulary import OPEN_STATUSES

PREFIX = "$inboxd-"
LABEL_PREFIX = "inboxd/"
# Dovecot refuses longer keywords by default (mail_max_keyword_length = 50).
KEYWORD_MAX = 50
STATUS_NAMES = {"new": "open", "open": "open", "pending": "pending", "solved": "solved", "closed": "closed"}
# The names a tag may not take, since they mean something else.
_RESERVED = frozenset({"open", "pending", "solved", "closed", "overdue"})
_REF = re.compile(r"T-\d+\Z")
_SAFE = re.compile(r"[a-z0-9_.+\-]")


@dataclass(frozen=True)
class TicketState:
    """What the keywords of a ticket's messages depend on."""

    ref: str
    status: str
    assignee: str | None = None
    tags: tuple[str, ...] = ()
    first_response_due: datetime | None = None
    first_response_at: datetime | None = None
    next_response_due: datetime | None = None
    resolution_due: datetime | None = None
    tier_response_due: datetime | None = None
    tier_unanswered: bool = False     # escalated and no agent answered since (store.tiers.tier_response_unmet)

    @classmethod
    def from_row(cls, row) -> "TicketState":
        """From a store row with the ticket's columns (tags as JSON text) and tier_unanswered."""
        tags = row.tags
        if isinstance(tags, str):
            try:
                tags = json.loads(tags or "[]")
            except ValueError:
                tags = []
        return cls(ref=row.ref, status=row.status, assignee=row.assignee,
                   tags=tuple(str(t) for t in tags or ()),
                   first_response_due=row.first_response_due, first_response_at=row.first_response_at,
                   next_response_due=row.next_response_due, resolution_due=row.resolution_due,
                   tier_response_due=row.tier_response_due, tier_unanswered=bool(row.tier_unanswered))


def overdue(state: TicketState, now: datetime) -> bool:
    """A promise broken before `now`: the same rule as `inboxd list --overdue` (store.tickets.list_rows)."""
    if state.status in ("solved", "closed"):
        return False
    return bool(
        (state.first_response_due is not None and state.first_response_due < now and state.first_response_at is None)
        or (state.next_response_due is not None and state.next_response_due < now)
        or (state.resolution_due is not None and state.resolution_due < now and state.status in OPEN_STATUSES)
        or (state.tier_response_due is not None and state.tier_response_due < now and state.tier_unanswered))


def wanted(state: TicketState, now: datetime, *, gmail: bool = False) -> frozenset[str]:
    """The keywords (Gmail: labels) a customer's message of this ticket should carry at `now`."""
    parts = [STATUS_NAMES.get(state.status, "open")]
    if state.assignee:
        parts.append("mine-" + (state.assignee if gmail else atom(state.assignee)))
    if overdue(state, now):
        parts.append("overdue")
    for tag in state.tags:
        name = tag.strip() if gmail else atom(tag)
        if not name:
            continue
        if name.lower() in _RESERVED or name.lower().startswith("mine-"):
            name = "tag-" + name
        parts.append(name.replace("/", "-") if gmail else name)
    if gmail:
        return frozenset({LABEL_PREFIX + state.ref, *(LABEL_PREFIX + p for p in parts)})
    return frozenset({state.ref, *(fit(PREFIX + p) for p in parts)})


def ours(name: str) -> bool:
    """Whether a keyword or label is one inboxd writes (and so may remove)."""
    return bool(_REF.match(name)) or name.startswith(PREFIX) or name.startswith(LABEL_PREFIX)


def plan(written: Iterable[str], want: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(add, remove) that turn `written` into `want`; only our own names are ever removed or added."""
    have = frozenset(written)
    goal = frozenset(n for n in want if ours(n))
    return goal - have, frozenset(n for n in have - goal if ours(n))


def seen_change(status: str, written: bool | None) -> bool | None:
    """The \\Seen to write under seen_on_close: True (set), False (clear) or None (leave it).

    Set once the ticket is solved or closed; cleared only if inboxd set it
    and the ticket is open again.  A message inboxd never marked is never
    touched while its ticket is open, so a reader's own \\Seen stays.
    """
    done = status in ("solved", "closed")
    if done and written is not True:
        return True
    if not done and written is True:
        return False
    return None


def atom(text: str) -> str:
    """`text` as keyword characters: lower-case, [a-z0-9_.+-], non-ASCII runs in modified UTF-7."""
    out: list[str] = []
    run: list[str] = []
    for ch in text.strip().lower():
        if ord(ch) > 0x7E:
            run.append(ch)
            continue
        if run:
            out.append(_mutf7("".join(run)))
            run = []
        out.append(ch if _SAFE.match(ch) else "_")
    if run:
        out.append(_mutf7("".join(run)))
    return "".join(out)


def fit(keyword: str) -> str:
    """`keyword` cut to KEYWORD_MAX characters, with a hash of the whole so cut names stay distinct."""
    if len(keyword) <= KEYWORD_MAX:
        return keyword
    digest = hashlib.sha256(keyword.encode()).hexdigest()[:8]
    return keyword[:KEYWORD_MAX - 9] + "-" + digest


def _mutf7(run: str) -> str:
    # RFC 3501 5.1.3: "&", base64 of UTF-16BE with "," for "/" and no padding, "-".
    data = base64.b64encode(run.encode("utf-16-be")).decode().rstrip("=").replace("/", ",")
    return "&" + data + "-"


@dataclass(frozen=True)
class Change:
    """What to send for one message, and what will then have been written."""

    add: frozenset[str]
    remove: frozenset[str]
    seen: bool | None                 # set (True), clear (False) or leave (None) \Seen
    keywords: frozenset[str]          # ours on the message once this is written
    seen_written: bool | None         # what inboxd will then have written of \Seen
    overdue: bool

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.seen is not None)


def change(state: TicketState, now: datetime, mode: str, written: frozenset[str],
           written_seen: bool | None) -> Change:
    """The change for one message under `mode`: "k" keywords or "g" Gmail labels, plus "s" for \\Seen.

    Without "k"/"g" the keywords written before are left as they are (a
    folder that stopped taking keywords is not asked to remove them).
    """
    if "k" in mode or "g" in mode:
        want = wanted(state, now, gmail="g" in mode)
        add, remove = plan(written, want)
        keywords = (written - remove) | add
    else:
        add = remove = frozenset()
        keywords = written
    seen = seen_change(state.status, written_seen) if "s" in mode else None
    return Change(add, remove, seen, keywords, written_seen if seen is None else seen, overdue(state, now))
