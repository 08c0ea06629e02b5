"""Step 3: decide which ticket a message belongs to.

One conversation is one ticket, whatever order its mail arrives in.  A
conversation is what the union of References and In-Reply-To makes of the
mail (the JWZ / notmuch definition): a message belongs with every stored
message that

  (a) has as its own Message-ID an id this message names (its parent),
  (b) names this message's id (a reply that arrived first), or
  (c) names an id this message names too (a sibling; the parent may never
      have reached the mailbox: a "ghost" parent),

and with the ticket our own Message-ID scheme or the subject tag points at.
When these lead to several tickets, the message joins the oldest (lowest
id) and the others are merged into it; `find_ticket` only decides this, and
returns the tickets to merge in `ThreadMatch.also` for the ingest step that
applies it.  The precedence for the reason is Roundup's, strengthened: the
message's own In-Reply-To, then its References from the newest back, then
our Message-ID scheme; the subject tag only when none of these names a
stored ticket; then stored replies and shared references.  A subject alone
never joins anything.  The decision is a pure function over a small lookup
interface, so it is tested without a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import Protocol

from inboxd.mail.message import InboundMessage

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


# A referenced id that is used to join siblings through a ghost parent must
# look like a msg-id: "local@domain", no spaces or brackets.  Anything else
# (a word of a free-text In-Reply-To, a half id) could be shared by chance.
_MSG_ID = re.compile(r"[^\s<>@\"]+@[^\s<>@\"]+")
# RFC 5322's line limit; a longer "id" is junk and is not looked up.
MAX_ID_LENGTH = 998


def is_msg_id(mid: str) -> bool:
    """Whether `mid` has the form of a msg-id (id-left "@" id-right), so it may join ghost siblings."""
    return len(mid) <= MAX_ID_LENGTH and _MSG_ID.fullmatch(mid) is not None


def parent_ids(msg: InboundMessage) -> list[tuple[str, str]]:
    """(header, id) for each id `msg` names: In-Reply-To, then References from
    the newest back; each id once, never the message's own, never an empty or
    overlong one."""
    found: dict[str, str] = {}
    for header, ids in (("In-Reply-To", msg.in_reply_to), ("References", tuple(reversed(msg.references)))):
        for mid in ids:
            if mid and len(mid) <= MAX_ID_LENGTH and mid != msg.message_id and mid not in found:
                found[mid] = header
    return [(header, mid) for mid, header in found.items()]


class ThreadLookup(Protocol):
    """What threading needs to know about the store (`inboxd.store.lookup.StoreLookup`).

    Tickets are the surviving ones: a merged ticket's messages are on the
    ticket that absorbed it, and its ref leads there.
    """

    def tickets_by_message_ids(self, ids: list[str]) -> dict[str, int]:
        """The ticket of each stored message whose own Message-ID is in `ids`."""

    def ticket_by_ref(self, ticket_id: str) -> int | None:
        """The ticket with this ticket id (e.g. "T-1042")."""

    def tickets_referencing(self, message_id: str) -> set[int]:
        """The tickets of stored messages that name `message_id` in In-Reply-To or References."""

    def tickets_sharing_refs(self, ids: list[str]) -> dict[str, set[int]]:
        """For each id in `ids`, the tickets of stored messages that name it too."""


@dataclass(frozen=True)
class ThreadMatch:
    ticket_pk: int | None
    reason: str
    # Other tickets of the same conversation, to be merged into ticket_pk,
    # and for each the header link that connects it.
    also: tuple[int, ...] = ()
    also_reasons: tuple[str, ...] = ()

    @property
    def is_new(self) -> bool:
        return self.ticket_pk is None

    def links(self) -> dict[int, str]:
        """Every ticket of the conversation, with why, the chosen one first."""
        chosen = {} if self.ticket_pk is None else {self.ticket_pk: self.reason}
        return chosen | dict(zip(self.also, self.also_reasons))


def find_ticket(
    msg: InboundMessage,
    lookup: ThreadLookup,
    tags: TicketTag,
    our_ref: Callable[[str], str | None] = lambda _mid: None,
) -> ThreadMatch:
    """The ticket `msg` continues (and the tickets to merge into it), or a
    match with no ticket for a new one.

    `our_ref` reads the ticket id out of one of our own Message-IDs (see
    inboxd.outbound.compose), so a reply threads even when the store never saw the
    id it answers (a relayed reply) and the client dropped the subject tag.
    """
    links: dict[int, str] = {}

    def link(pk: int | None, why: str) -> None:
        if pk is not None and pk not in links:
            links[pk] = why

    parents = parent_ids(msg)
    if parents:
        known = lookup.tickets_by_message_ids([mid for _header, mid in parents])
        for header, mid in parents:
            if mid in known:
                link(known[mid], f"{header} <{mid}>")
        for _header, mid in parents:
            ref = our_ref(mid)
            if ref:
                link(lookup.ticket_by_ref(ref), f"our Message-ID <{mid}>")
    if not links:
        tagged = tags.find(msg.subject)
        if tagged is not None:
            link(lookup.ticket_by_ref(tagged), f"subject tag {tags.tag(tagged)}")
    mid = msg.message_id
    if mid and len(mid) <= MAX_ID_LENGTH:
        for pk in sorted(lookup.tickets_referencing(mid)):
            link(pk, f"referenced by a stored reply to <{mid}>")
    ghosts = [ref for _header, ref in parents if is_msg_id(ref)]
    if ghosts:
        sharing = lookup.tickets_sharing_refs(ghosts)
        for ref in ghosts:
            for pk in sorted(sharing.get(ref, ())):
                link(pk, f"shares the reference <{ref}> with a stored message")
    if not links:
        return ThreadMatch(None, "new ticket")
    # The oldest ticket of the conversation survives; its number is the one
    # the customer most likely saw first.
    chosen = min(links)
    others = sorted(pk for pk in links if pk != chosen)
    return ThreadMatch(chosen, links[chosen], tuple(others), tuple(links[pk] for pk in others))


# How active a status is, for joining tickets: the joined ticket needs
# attention if any of its parts did.
_ACTIVITY = {"closed": 0, "solved": 1, "pending": 2, "new": 3, "open": 4}


def joined_status(statuses: list[str]) -> str:
    """The status of tickets joined into one conversation, the survivor's first.

    The most active status wins (open, new, pending, solved, closed), so a
    closed or solved survivor is reopened by a part still being worked on
    and never the reverse; except that a part waiting for our answer (new)
    and one waiting for the customer (pending) make an open ticket: the
    customer has written since we last did.
    """
    present = set(statuses)
    if "new" in present and "pending" in present:
        return "open"
    return max(statuses, key=lambda status: _ACTIVITY.get(status, -1))
