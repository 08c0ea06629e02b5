"""The ticket's state as IMAP keywords and Gmail labels (inboxd.desk.keywords): pure, no server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from inboxd.desk.keywords import (KEYWORD_MAX, TicketState, atom, change, ours, overdue, plan, seen_change,
                                  wanted)

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
# RFC 3501 atom characters a keyword may use (no atom-specials, no "\\", ASCII only).
ATOM = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]+\Z")


def state(**kw) -> TicketState:
    return TicketState(**{"ref": "T-1000", "status": "open", **kw})


def test_status_assignee_and_tags_become_keywords():
    got = wanted(state(assignee="alice", tags=("vip", "billing")), NOW)
    assert got == {"T-1000", "$inboxd-open", "$inboxd-mine-alice", "$inboxd-vip", "$inboxd-billing"}


def test_every_status_has_its_keyword_and_new_counts_as_open():
    names = {s: wanted(state(status=s), NOW) - {"T-1000"} for s in ("new", "open", "pending", "solved", "closed")}
    assert names == {"new": {"$inboxd-open"}, "open": {"$inboxd-open"}, "pending": {"$inboxd-pending"},
                     "solved": {"$inboxd-solved"}, "closed": {"$inboxd-closed"}}


def test_overdue_follows_the_list_overdue_rule():
    past, future = NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)
    assert overdue(state(first_response_due=past), NOW)
    assert not overdue(state(first_response_due=past, first_response_at=past), NOW)
    assert not overdue(state(first_response_due=future), NOW)
    assert overdue(state(next_response_due=past), NOW)
    assert overdue(state(resolution_due=past, status="pending"), NOW)
    assert not overdue(state(resolution_due=past, status="solved"), NOW)
    assert overdue(state(tier_response_due=past, tier_unanswered=True), NOW)
    assert not overdue(state(tier_response_due=past, tier_unanswered=False), NOW)
    assert "$inboxd-overdue" in wanted(state(first_response_due=past), NOW)
    assert "$inboxd-overdue" not in wanted(state(first_response_due=past), past - timedelta(seconds=1))


def test_tags_are_atoms_and_chinese_is_modified_utf7():
    # The same as imapclient's (and Thunderbird's) modified UTF-7 for a folder named so.
    assert atom("退款") == "&kABrPg-"
    assert atom("Big Deal (Q4)") == "big_deal__q4_"
    assert atom('a"b\\c%d*e]f{g') == "a_b_c_d_e_f_g"
    got = wanted(state(tags=("退款", "Big Deal", "售后 vip")), NOW)
    assert {"$inboxd-&kABrPg-", "$inboxd-big_deal", "$inboxd-&VS5UDg-_vip"} <= got
    for name in got:
        assert ATOM.match(name), name
        assert len(name) <= KEYWORD_MAX


def test_a_tag_never_poses_as_a_status_and_long_ones_stay_distinct():
    got = wanted(state(tags=("closed", "mine-bob", "overdue")), NOW)
    assert {"$inboxd-tag-closed", "$inboxd-tag-mine-bob", "$inboxd-tag-overdue"} <= got
    assert "$inboxd-closed" not in got and "$inboxd-overdue" not in got
    a, b = ("x" * 60 + "a", "x" * 60 + "b")
    ka, kb = (wanted(state(tags=(t,)), NOW) - wanted(state(), NOW) for t in (a, b))
    assert ka != kb and all(len(k) == KEYWORD_MAX for k in ka | kb)
    assert wanted(state(tags=(a,)), NOW) == wanted(state(tags=(a,)), NOW)


def test_gmail_labels_are_the_same_names_under_inboxd():
    got = wanted(state(assignee="alice", tags=("vip", "退款", "a/b")), NOW, gmail=True)
    assert got == {"inboxd/T-1000", "inboxd/open", "inboxd/mine-alice", "inboxd/vip", "inboxd/退款", "inboxd/a-b"}


def test_plan_only_removes_our_own_keywords():
    written = {"T-1000", "$inboxd-open", "$inboxd-mine-alice", "$label1", "\\Flagged", "Junk"}
    add, remove = plan(written, {"T-1000", "$inboxd-solved", "$inboxd-mine-bob"})
    assert add == {"$inboxd-solved", "$inboxd-mine-bob"}
    assert remove == {"$inboxd-open", "$inboxd-mine-alice"}
    assert plan({"T-1000", "$inboxd-open"}, {"T-1000", "$inboxd-open"}) == (set(), set())
    assert not any(ours(f) for f in ("\\Seen", "\\Deleted", "\\Flagged", "$Junk", "$label1", "NonJunk", "T-x"))
    # Never asked to add someone else's flag either.
    assert plan(set(), {"\\Deleted", "T-1"}) == ({"T-1"}, set())


def test_seen_is_set_on_close_cleared_on_reopen_and_otherwise_left_alone():
    assert seen_change("solved", None) is True
    assert seen_change("closed", True) is None
    assert seen_change("open", True) is False
    assert seen_change("open", None) is None      # never marked by us: a reader's own \Seen stays
    assert seen_change("open", False) is None
    assert seen_change("pending", False) is None


def test_change_follows_the_mode():
    s = state(status="closed", tags=("vip",))
    keywords_only = change(s, NOW, "k", frozenset({"T-1000", "$inboxd-open"}), None)
    assert keywords_only.add == {"$inboxd-closed", "$inboxd-vip"} and keywords_only.remove == {"$inboxd-open"}
    assert keywords_only.seen is None and keywords_only.seen_written is None
    assert keywords_only.keywords == {"T-1000", "$inboxd-closed", "$inboxd-vip"}
    seen_only = change(s, NOW, "s", frozenset({"T-1000"}), None)
    assert not seen_only.add and not seen_only.remove and seen_only.seen is True
    assert seen_only.keywords == {"T-1000"} and seen_only.seen_written is True
    settled = change(s, NOW, "ks", frozenset({"T-1000", "$inboxd-closed", "$inboxd-vip"}), True)
    assert settled.empty
