"""Step 3: decide which ticket a message belongs to.

The order is Roundup's, strengthened: the message's own In-Reply-To, then its
References from the newest back, then the ticket tag in its subject, then any
stored message that names this message as its parent (a reply that arrived
first).  Otherwise it opens a new ticket.  The decision is a pure function
over a small lookup interface, so it is tested without a database, and it
returns the reason it chose, which goes into the ticket's history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import Protocol

from inboxd.message import InboundMessage

# Reply and forward prefixes of the mail clients our users run, including the
# Chinese ones Foxmail and Outlook write ("回复", "答复", "转发", "回覆").  A
# counter like "Re[2]:" and the full-width colon are accepted as well.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|sv|vs|wg|antw|tr|rif|回复|答复|转发|回覆|轉寄|转寄)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)


def strip_prefixes(subject: str) -> str:
    """The subject without its leading Re:/Fwd:/回复: chain."""
    return _PREFIX.sub("", subject).strip()


class TicketTag:
    """Formats and finds the ticket tag, e.g. "[T-1042]", in subjects."""

    def __init__(self, id_format: str, tag_format: str):
        self.id_format = id_format
        self.tag_format = tag_format
        id_pattern = _pattern_around(id_format, r"\{seq(?::[^}]*)?\}", r"\d+")
        tag_pattern = _pattern_around(tag_format, r"\{id\}", f"({id_pattern})")
        # Case matters: ids are stored as formatted and clients keep subjects intact.
        self._find = re.compile(tag_pattern)

    def ticket_id(self, seq: int) -> str:
        return self.id_format.format(seq=seq)

    def tag(self, ticket_id: str) -> str:
        return self.tag_format.format(id=ticket_id)

    def find(self, subject: str) -> str | None:
        """The ticket id named by a tag in `subject`, if any."""
        match = self._find.search(subject)
        return match.group(1) if match else None

    def display_subject(self, subject: str) -> str:
        """The subject as a ticket shows it: no reply prefixes, no tag."""
        return strip_prefixes(self._find.sub("", strip_prefixes(subject)))


def _pattern_around(fmt: str, placeholder: str, replacement: str) -> str:
    # Everything outside the placeholder is literal text in the format.
    parts = re.split(placeholder, fmt, maxsplit=1)
    if len(parts) != 2:
        raise ValueError(f"format {fmt!r} has no placeholder")
    return re.escape(parts[0]) + replacement + re.escape(parts[1])


class ThreadLookup(Protocol):
    """What threading needs to know about the store."""

    def tickets_by_message_ids(self, ids: list[str]) -> dict[str, int]: ...
    def ticket_by_ref(self, ticket_id: str) -> int | None: ...
    def ticket_referencing(self, message_id: str) -> int | None: ...


@dataclass(frozen=True)
class ThreadMatch:
    ticket_pk: int | None
    reason: str

    @property
    def is_new(self) -> bool:
        return self.ticket_pk is None


def find_ticket(
    msg: InboundMessage,
    lookup: ThreadLookup,
    tags: TicketTag,
    our_ref: Callable[[str], str | None] = lambda _mid: None,
) -> ThreadMatch:
    """The ticket `msg` continues, or a match with no ticket for a new one.

    `our_ref` reads the ticket id out of one of our own Message-IDs (see
    inboxd.compose), so a reply threads even when the store never saw the
    id it answers (a relayed reply) and the client dropped the subject tag.
    """
    parents = [*msg.in_reply_to, *reversed(msg.references)]
    if parents:
        known = lookup.tickets_by_message_ids(parents)
        for header, ids in (("In-Reply-To", msg.in_reply_to), ("References", tuple(reversed(msg.references)))):
            for mid in ids:
                if mid in known:
                    return ThreadMatch(known[mid], f"{header} <{mid}>")
        for mid in parents:
            ref = our_ref(mid)
            pk = lookup.ticket_by_ref(ref) if ref else None
            if pk is not None:
                return ThreadMatch(pk, f"our Message-ID <{mid}>")
    tagged = tags.find(msg.subject)
    if tagged is not None:
        pk = lookup.ticket_by_ref(tagged)
        if pk is not None:
            return ThreadMatch(pk, f"subject tag {tags.tag(tagged)}")
    if msg.message_id:
        pk = lookup.ticket_referencing(msg.message_id)
        if pk is not None:
            return ThreadMatch(pk, f"referenced by a stored reply to <{msg.message_id}>")
    return ThreadMatch(None, "new ticket")
