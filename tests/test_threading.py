"""Threading decisions and subject handling, as pure functions (no store)."""

from dataclasses import replace

import pytest

from inboxd.mail.message import Address, AutoFacts, InboundMessage
from inboxd.desk.threads import TicketTag, find_ticket, joined_status, strip_prefixes

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
    """A store reduced to what threading asks of it: stored messages as
    (Message-ID, ids they name, ticket), and ticket ids ("T-1003") to tickets."""

    def __init__(self, messages=(), by_ref=None, by_id=None, referencing=None):
        self.messages = [*messages, *((mid, (), pk) for mid, pk in (by_id or {}).items()),
                         *((f"reply-to-{mid}", (mid,), pk) for mid, pk in (referencing or {}).items())]
        self.by_ref = by_ref or {}

    def tickets_by_message_ids(self, ids):
        return {mid: pk for mid, _refs, pk in self.messages if mid in ids}

    def ticket_by_ref(self, ref):
        return self.by_ref.get(ref)

    def tickets_referencing(self, mid):
        return {pk for _mid, refs, pk in self.messages if mid in refs}

    def tickets_sharing_refs(self, ids):
        found = {}
        for _mid, refs, pk in self.messages:
            for ref in refs:
                if ref in ids:
                    found.setdefault(ref, set()).add(pk)
        return found


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


def test_in_reply_to_names_the_reason_and_references_of_other_tickets_are_merged():
    lookup = FakeLookup(by_id={"a@x": 1, "b@x": 2}, by_ref={"T-1003": 3})
    m = msg(in_reply_to=("b@x",), references=("a@x", "b@x"), subject="Re: [T-1003] hi")
    match = find_ticket(m, lookup, TAGS)
    # One conversation: it joins the oldest ticket and the other is merged in; the tag plays no part.
    assert (match.ticket_pk, match.reason, match.also, match.also_reasons) == (
        1, "References <a@x>", (2,), ("In-Reply-To <b@x>",))
    assert find_ticket(replace(m, references=("b@x",)), lookup, TAGS).links() == {2: "In-Reply-To <b@x>"}


def test_references_newest_first():
    lookup = FakeLookup(by_id={"c@x": 5, "e@x": 6})
    m = msg(references=("a@x", "b@x", "c@x", "e@x"))
    match = find_ticket(m, lookup, TAGS)
    assert (match.ticket_pk, match.reason, match.also, match.also_reasons) == (
        5, "References <c@x>", (6,), ("References <e@x>",))


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
    from inboxd.outbound.compose import new_message_id, ticket_ref_from_message_id

    ours = new_message_id("T-1007", "example.com", unique="abc123")
    lookup = FakeLookup(by_ref={"T-1007": 7})
    m = msg(in_reply_to=(ours,), subject="Re: something else")
    match = find_ticket(m, lookup, TAGS, ticket_ref_from_message_id)
    assert (match.ticket_pk, match.reason) == (7, f"our Message-ID <{ours}>")
    # Without the scheme reader the same mail is a new ticket.
    assert find_ticket(m, lookup, TAGS).is_new


# --- One conversation, one ticket: the union of References and In-Reply-To ----------
#
# Each case: the stored messages (Message-ID, ids they name, ticket), the
# arriving message, and (ticket it joins, tickets merged into it, reason).

OURS = "T-1007.abc123@example.com"   # stands for one of our Message-IDs; see our_ref below


def our_ref(mid: str) -> str | None:
    return "T-1007" if mid == OURS else None


UNION_CASES = {
    # Ghost parents: the message both name never reached the mailbox.
    "sibling of a ghost parent": (
        [("s1@x", ("root@x",), 4)], dict(message_id="s2@x", in_reply_to=("root@x",), references=("root@x",)),
        (4, (), "shares the reference <root@x> with a stored message")),
    "ghost grandparent only": (
        [("s1@x", ("root@x", "p1@x"), 4)], dict(message_id="s2@x", references=("root@x", "p2@x")),
        (4, (), "shares the reference <root@x> with a stored message")),
    "ghost siblings on two tickets are merged": (
        [("s1@x", ("root@x",), 4), ("t1@x", ("other@x",), 2)],
        dict(message_id="s2@x", references=("other@x", "root@x")),
        (2, (4,), "shares the reference <other@x> with a stored message")),
    # Out of order: a reply was filed before its parent.
    "parent after its reply": (
        [("r@x", ("m1@example.cn",), 8)], dict(),
        (8, (), "referenced by a stored reply to <m1@example.cn>")),
    "parent after replies on two tickets": (
        [("r1@x", ("m1@example.cn",), 8), ("r2@x", ("m1@example.cn",), 3)], dict(),
        (3, (8,), "referenced by a stored reply to <m1@example.cn>")),
    "middle message joins grandparent's and grandchild's tickets": (
        [("a@x", (), 2), ("c@x", ("b@x",), 1)], dict(message_id="b@x", in_reply_to=("a@x",), references=("a@x",)),
        (1, (2,), "referenced by a stored reply to <b@x>")),
    "sibling before parent, then the parent": (
        [("s1@x", ("p@x",), 5), ("s2@x", ("p@x",), 5)], dict(message_id="p@x"),
        (5, (), "referenced by a stored reply to <p@x>")),
    # Broken References.
    "truncated References: the parent alone": (
        [("p@x", (), 6)], dict(references=("p@x",)), (6, (), "References <p@x>")),
    "In-Reply-To with two ids on two tickets": (
        [("id1@x", (), 1), ("id2@x", (), 2)], dict(in_reply_to=("id1@x", "id2@x")),
        (1, (2,), "In-Reply-To <id1@x>")),
    "a shared word is no ghost parent": (
        [("s1@x", ("Jan",), 4)], dict(message_id="s2@x", in_reply_to=("Jan",)), (None, (), "new ticket")),
    "a shared half id is no ghost parent": (
        [("s1@x", ("abc@",), 4)], dict(message_id="s2@x", references=("abc@",)), (None, (), "new ticket")),
    "an overlong id is not looked up": (
        [("s1@x", ("a" * 999 + "@x",), 4), ("a" * 999 + "@x", (), 4)],
        dict(message_id="s2@x", references=("a" * 999 + "@x",)), (None, (), "new ticket")),
    "the message's own id in its References links nothing": (
        [("m1@example.cn#0123456789abcdef", (), 4)], dict(references=("m1@example.cn",)), (None, (), "new ticket")),
    # A reused Message-ID: the second mail is stored under "<id>#<hash>", which
    # nobody names, so replies to the first never pull it in, nor it them.
    "the repeat of a Message-ID threads by its own headers only": (
        [("x@x", (), 1), ("r@x", ("x@x",), 1)], dict(message_id="x@x#0123456789abcdef"), (None, (), "new ticket")),
    "the repeat with a parent of its own": (
        [("x@x", (), 1), ("r@x", ("x@x",), 1), ("q@x", (), 9)],
        dict(message_id="x@x#0123456789abcdef", in_reply_to=("q@x",)), (9, (), "In-Reply-To <q@x>")),
    # Subject tags and our Message-ID scheme.
    "stored parent beats the tag": (
        [("p@x", (), 2)], dict(in_reply_to=("p@x",), subject="Re: [T-1003] hi"), (2, (), "In-Reply-To <p@x>")),
    "tag when no header names a stored ticket": (
        [], dict(in_reply_to=("unknown@x",), subject="Re: [T-1003] hi"), (3, (), "subject tag [T-1003]")),
    "our Message-ID beats the tag": (
        [], dict(in_reply_to=(OURS,), subject="Re: [T-1003] hi"), (7, (), f"our Message-ID <{OURS}>")),
    "our Message-ID and a stored parent on another ticket": (
        [("p@x", (), 9)], dict(in_reply_to=(OURS,), references=("p@x", OURS)),
        (7, (9,), f"our Message-ID <{OURS}>")),
    "tag, and a ghost sibling on an older ticket": (
        [("s1@x", ("root@x",), 1)], dict(message_id="s2@x", references=("root@x",), subject="Re: [T-1003] hi"),
        (1, (3,), "shares the reference <root@x> with a stored message")),
    # A subject alone never joins anything, whoever wrote it.
    "same subject, no headers": (
        [("p@x", (), 2)], dict(subject="Order"), (None, (), "new ticket")),
}


@pytest.mark.parametrize("stored, fields, expected", UNION_CASES.values(), ids=UNION_CASES.keys())
def test_union_of_references(stored, fields, expected):
    lookup = FakeLookup(stored, by_ref={"T-1003": 3, "T-1007": 7})
    match = find_ticket(msg(**fields), lookup, TAGS, our_ref)
    assert (match.ticket_pk, match.also, match.reason) == expected
    assert len(match.also_reasons) == len(match.also)


def test_any_arrival_order_gives_one_ticket():
    """A chain a <- b <- c <- d (each naming only its parent) and a sibling
    of a ghost, filed in every order into a store that merges as told:
    always one ticket."""
    from itertools import permutations

    chain = {"a@x": (), "b@x": ("a@x",), "c@x": ("b@x",), "d@x": ("c@x", "ghost@x"), "e@x": ("ghost@x",)}
    for order in permutations(chain):
        lookup, next_pk = FakeLookup(), 1
        for mid in order:
            match = find_ticket(msg(message_id=mid, in_reply_to=chain[mid][-1:], references=chain[mid]),
                                lookup, TAGS)
            if match.is_new:
                pk, next_pk = next_pk, next_pk + 1
            else:
                pk = match.ticket_pk
                assert pk < min(match.also, default=pk + 1)
                lookup.messages = [(m, r, pk if t in match.also else t) for m, r, t in lookup.messages]
            lookup.messages.append((mid, chain[mid], pk))
        assert {t for _m, _r, t in lookup.messages} == {1}, order


@pytest.mark.parametrize("header, in_reply_to", [
    (b"Your message of Tue, 3 Jan 2006 10:00 <abc@x>", ("abc@x",)),
    (b"<id1@x> <id2@x>", ("id1@x", "id2@x")),
    (b"abc@x", ("abc@x",)),
    (b"Your message of Tue, 3 Jan 2006 10:00", ()),
    (b'Message from Ann <ann@x> of "Tue, 3 Jan 2006 10:00" <abc@x>', ("abc@x",)),
    (b"<ann@x>'s message of Tue, 3 Jan 2006", ()),
    (b"ann@x's message of Tue, 3 Jan 2006", ()),
    (b"<abc@x>; from ann@x on Tue, Jan 03, 2006", ("abc@x",)),
    (b"<abc@x> (Ann's message of Tuesday)", ("abc@x",)),
    (b"<>", ()),
    (b"<a@x <b@x>", ("a@x", "b@x")),
    (b"<a@x b@x>", ("a@x", "b@x")),
])
def test_in_reply_to_forms(header, in_reply_to):
    from inboxd.mail.message import parse_message

    raw = b"From: a@example.com\r\nMessage-ID: <m@x>\r\nIn-Reply-To: " + header + b"\r\nSubject: s\r\n\r\nhi\r\n"
    assert parse_message(raw).in_reply_to == in_reply_to


def test_truncated_and_overlong_references():
    from inboxd.mail.message import parse_message

    many = b" ".join(b"<r%d@x>" % i for i in range(2000))
    raw = (b"From: a@example.com\r\nMessage-ID: <m@x>\r\nReferences: " + many + b" <cut@exa\r\n"
           b"Subject: s\r\n\r\nhi\r\n")
    parsed = parse_message(raw)
    # The id cut off at the end names nothing; the rest are all kept.
    assert len(parsed.references) == 2000 and parsed.references[-1] == "r1999@x"


@pytest.mark.parametrize("statuses, joined", [
    (["closed", "open"], "open"),
    (["open", "closed"], "open"),
    (["solved", "pending"], "pending"),
    (["pending", "new"], "open"),
    (["new", "new"], "new"),
    (["closed", "solved"], "solved"),
    (["pending", "closed", "closed"], "pending"),
])
def test_joined_status(statuses, joined):
    assert joined_status(statuses) == joined
