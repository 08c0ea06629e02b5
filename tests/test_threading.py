"""Threading decisions and subject handling, as pure functions (no store)."""

from dataclasses import replace

import pytest

from inboxd.message import Address, AutoFacts, InboundMessage
from inboxd.threading import TicketTag, find_ticket, strip_prefixes

TAGS = TicketTag("T-{seq}", "[{id}]")


def msg(**kw) -> InboundMessage:
    base = InboundMessage(
        message_id="m1@example.cn", in_reply_to=(), references=(),
        from_=Address("Li Lei", "lilei@example.cn"), to=(), cc=(), reply_to=(), date=None,
        subject="Order", text="", html_only=False, attachments=(),
        auto=AutoFacts(None, None, None, False, None, None, False, None), defects=(), size=0,
    )
    return replace(base, **kw)


class FakeLookup:
    def __init__(self, by_id=None, by_ref=None, referencing=None):
        self.by_id = by_id or {}
        self.by_ref = by_ref or {}
        self.referencing = referencing or {}

    def tickets_by_message_ids(self, ids):
        return {i: self.by_id[i] for i in ids if i in self.by_id}

    def ticket_by_ref(self, ref):
        return self.by_ref.get(ref)

    def ticket_referencing(self, mid):
        return self.referencing.get(mid)


@pytest.mark.parametrize("subject, expected", [
    ("Re: Order 42", "Order 42"),
    ("RE: Fwd: Order 42", "Order 42"),
    ("AW: SV: Order", "Order"),
    ("回复: 订单没有收到", "订单没有收到"),
    ("答复：订单没有收到", "订单没有收到"),
    ("转发: 回覆: 订单", "订单"),
    ("Re[2]: Order", "Order"),
    ("Reply needed", "Reply needed"),
    ("Re:", ""),
])
def test_strip_prefixes(subject, expected):
    assert strip_prefixes(subject) == expected


def test_tag_round_trip_and_display_subject():
    assert TAGS.ticket_id(1042) == "T-1042"
    assert TAGS.tag("T-1042") == "[T-1042]"
    assert TAGS.find("Re: [T-1042] My order") == "T-1042"
    assert TAGS.find("回复: [T-1042] 订单") == "T-1042"
    assert TAGS.find("T-1042 without brackets") is None
    assert TAGS.display_subject("Re: [T-1042] Re: My order") == "My order"


def test_custom_formats():
    tags = TicketTag("{seq:06d}", "[Support #{id}]")
    assert tags.ticket_id(7) == "000007"
    assert tags.find("Re: [Support #000007] hi") == "000007"
    assert tags.find("Re: [Support #abc] hi") is None


def test_in_reply_to_wins_over_references_and_tag():
    lookup = FakeLookup(by_id={"a@x": 1, "b@x": 2}, by_ref={"T-1003": 3})
    m = msg(in_reply_to=("b@x",), references=("a@x", "b@x"), subject="Re: [T-1003] hi")
    match = find_ticket(m, lookup, TAGS)
    assert (match.ticket_pk, match.reason) == (2, "In-Reply-To <b@x>")


def test_references_newest_first():
    lookup = FakeLookup(by_id={"a@x": 1, "c@x": 5})
    m = msg(references=("a@x", "b@x", "c@x"))
    assert find_ticket(m, lookup, TAGS).ticket_pk == 5


def test_tag_when_headers_are_unknown():
    lookup = FakeLookup(by_ref={"T-1003": 3})
    m = msg(in_reply_to=("unknown@x",), subject="回复: [T-1003] 订单")
    match = find_ticket(m, lookup, TAGS)
    assert (match.ticket_pk, match.reason) == (3, "subject tag [T-1003]")


def test_tag_of_unknown_ticket_opens_new():
    assert find_ticket(msg(subject="[T-9999] hi"), FakeLookup(), TAGS).is_new


def test_parent_arriving_after_its_reply_joins_the_reply():
    lookup = FakeLookup(referencing={"m1@example.cn": 8})
    match = find_ticket(msg(), lookup, TAGS)
    assert match.ticket_pk == 8


def test_new_ticket():
    match = find_ticket(msg(), FakeLookup(), TAGS)
    assert match.is_new and match.reason == "new ticket"


def test_our_message_id_scheme_threads_without_stored_ids_or_tag():
    from inboxd.compose import new_message_id, ticket_ref_from_message_id

    ours = new_message_id("T-1007", "example.com", unique="abc123")
    lookup = FakeLookup(by_ref={"T-1007": 7})
    m = msg(in_reply_to=(ours,), subject="Re: something else")
    match = find_ticket(m, lookup, TAGS, ticket_ref_from_message_id)
    assert (match.ticket_pk, match.reason) == (7, f"our Message-ID <{ours}>")
    # Without the scheme reader the same mail is a new ticket.
    assert find_ticket(m, lookup, TAGS).is_new
