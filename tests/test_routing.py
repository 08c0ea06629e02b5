"""Tests for inboxd.desk.routing: every condition, order and stop, merging, assignment and every config error."""

from __future__ import annotations

import dataclasses
import tomllib
from typing import Any

import pytest

from inboxd.config import ConfigError
from inboxd.mail.message import Address, Attachment, AutoFacts, InboundMessage
from inboxd.desk.routing import (
    Decision, Facts, Outcome, RuleSet, facts_for, merge, parse_rules, pick_assignee,
)

AGENTS = {"alice", "bob", "erin"}
SLAS = {"standard", "vip"}
MAILBOXES = {"support", "billing"}
GROUPS = [{"name": "vip", "members": ["ceo@bigcorp.example", "@vip.example"]}]
TEAMS = [{"name": "billing", "agents": ["bob", "erin"]}]

BASE = Facts(
    event="new",
    mailbox="support",
    sender="lilei@vip.example",
    subject="Refund for order 42",
    body="Hello, my invoice INV-7 is wrong.",
    headers={"x-priority": "1 (Highest)"},
    attachment_types=("application/pdf",),
    tags=frozenset({"billing"}),
    priority="normal",
    team=None,
)


def facts(**changes: Any) -> Facts:
    return dataclasses.replace(BASE, **changes)


def rules(*raw: dict, groups: list | None = None, teams: list | None = None) -> RuleSet:
    return parse_rules(
        list(raw), GROUPS if groups is None else groups, TEAMS if teams is None else teams,
        file_name="inboxd.toml", agents=AGENTS, sla_names=SLAS, mailboxes=MAILBOXES,
    )


def one(condition: dict) -> RuleSet:
    return rules({"name": "r", "on": ["new", "message", "tag"], "if": condition, "then": {"tags": ["hit"]}})


def error(*raw: dict, groups: list | None = None, teams: list | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        rules(*raw, groups=groups, teams=teams)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- Every condition, matching and not matching.

CONDITIONS = [
    # (condition, facts that match, facts that do not, the reason when it matches)
    ({"mailbox": "support"}, {}, {"mailbox": "billing"}, 'mailbox "support" matched'),
    ({"mailbox": ["billing", "support"]}, {}, {"mailbox": "other"}, 'mailbox "support" matched'),
    ({"from": ["LiLei@VIP.example"]}, {}, {"sender": "hanmei@vip.example"},
     'from "lilei@vip.example" matched'),
    ({"from_domain": ["vip.example"]}, {}, {"sender": "lilei@vip.example.org"},
     'from_domain "vip.example" matched lilei@vip.example'),
    ({"from_domain": ["@VIP.example"]}, {}, {"sender": "x@sub.vip.example"},
     'from_domain "vip.example" matched lilei@vip.example'),
    ({"group": ["vip"]}, {}, {"sender": "lilei@example.com"}, 'group "vip" matched lilei@vip.example'),
    ({"subject": ["printer", "REFUND"]}, {}, {"subject": "Order 42"}, 'subject contains "REFUND"'),
    ({"subject_regex": r"order \d+"}, {}, {"subject": "Order 42"}, 'subject_regex "order \\\\d+" matched "order 42"'),
    ({"body": ["invoice"]}, {}, {"body": "Hello"}, 'body contains "invoice"'),
    ({"body_regex": r"INV-\d+"}, {}, {"body": "inv-7"}, 'body_regex "INV-\\\\d+" matched "INV-7"'),
    ({"header": {"X-Priority": "^1"}}, {}, {"headers": {"x-priority": "3"}},
     'header x-priority "^1" matched "1 (Highest)"'),
    ({"header": {"x-priority": "^1"}}, {}, {"headers": {}}, 'header x-priority "^1" matched "1 (Highest)"'),
    ({"has_attachment": True}, {}, {"attachment_types": ()}, "has an attachment"),
    ({"has_attachment": False}, {"attachment_types": ()}, {}, "has no attachment"),
    ({"attachment_type": ["image/", "application/pdf"]}, {}, {"attachment_types": ("text/plain",)},
     'attachment_type "application/pdf" matched application/pdf'),
    ({"tags_any": ["vip", "billing"]}, {}, {"tags": frozenset({"other"})}, 'tags_any "billing" present'),
    ({"tags_all": ["billing", "vip"]}, {"tags": frozenset({"vip", "billing", "x"})}, {},
     'tags_all ["billing", "vip"] present'),
    ({"priority": ["normal", "high"]}, {}, {"priority": "low"}, 'priority "normal" matched'),
]


@pytest.mark.parametrize(("condition", "hit", "miss", "why"), CONDITIONS,
                         ids=[f"{i}-{next(iter(c[0]))}" for i, c in enumerate(CONDITIONS)])
def test_each_condition_matches_and_misses(condition: dict, hit: dict, miss: dict, why: str) -> None:
    ruleset = one(condition)
    assert ruleset.evaluate(facts(**hit)) == [Decision("r", {"tags": ("hit",)}, why)]
    assert ruleset.evaluate(facts(**miss)) == []


def test_all_conditions_must_hold_and_the_reason_names_each() -> None:
    ruleset = one({"from_domain": ["vip.example"], "subject": ["refund"]})
    [decision] = ruleset.evaluate(facts())
    assert decision.why == 'from_domain "vip.example" matched lilei@vip.example and subject contains "refund"'
    assert ruleset.evaluate(facts(subject="Hello")) == []
    assert ruleset.evaluate(facts(sender="a@b.example")) == []


def test_header_table_needs_every_header() -> None:
    ruleset = one({"header": {"x-priority": "^1", "x-mailer": "Outlook"}})
    assert ruleset.evaluate(facts()) == []
    [decision] = ruleset.evaluate(facts(headers={"x-priority": "1", "x-mailer": "Microsoft Outlook 16"}))
    assert decision.why == 'header x-priority "^1" matched "1" and header x-mailer "Outlook" matched "Microsoft Outlook 16"'


def test_regexes_are_case_sensitive_as_written() -> None:
    assert one({"subject_regex": "refund"}).evaluate(facts()) == []
    assert one({"subject_regex": "(?i)refund"}).evaluate(facts()) != []


def test_empty_or_absent_if_always_matches() -> None:
    for ruleset in (one({}), rules({"name": "r", "then": {"tags": ["hit"]}})):
        [decision] = ruleset.evaluate(facts())
        assert decision.why == "no conditions, matches every ticket"


def test_events_select_rules_and_default_is_new() -> None:
    ruleset = rules(
        {"name": "default", "then": {"tags": ["a"]}},
        {"name": "messages", "on": "message", "then": {"tags": ["b"]}},
        {"name": "tags", "on": ["tag"], "then": {"tags": ["c"]}},
    )
    assert [d.rule for d in ruleset.evaluate(facts(event="new"))] == ["default"]
    assert [d.rule for d in ruleset.evaluate(facts(event="message"))] == ["messages"]
    assert [d.rule for d in ruleset.evaluate(facts(event="tag"))] == ["tags"]


# --- Customer groups.

def test_vip_group_by_address_and_by_domain() -> None:
    ruleset = rules()
    assert ruleset.in_group("CEO@bigcorp.example", "vip")
    assert not ruleset.in_group("cfo@bigcorp.example", "vip")
    assert ruleset.in_group("anyone@vip.example", "vip")
    assert not ruleset.in_group("anyone@notvip.example", "vip")
    assert not ruleset.in_group("anyone@sub.vip.example", "vip")
    with pytest.raises(KeyError):
        ruleset.in_group("ceo@bigcorp.example", "gold")
    group_rule = one({"group": ["vip"]})
    assert group_rule.evaluate(facts(sender="ceo@bigcorp.example"))[0].why == (
        'group "vip" matched ceo@bigcorp.example')


# --- The contract example, order, stop, merge.

CONTRACT = """
[[customer_groups]]
name = "vip"
members = ["ceo@bigcorp.example", "@vip.example"]

[[teams]]
name = "billing"
agents = ["bob", "erin"]

[[rules]]
name = "vip"
if = { from_domain = ["vip.example"] }
then = { priority = "urgent", tags = ["vip"], assign = "alice" }
"""


def test_contract_example_gives_exactly_that_outcome() -> None:
    data = tomllib.loads(CONTRACT)
    ruleset = parse_rules(data["rules"], data["customer_groups"], data["teams"], file_name="inboxd.toml",
                          agents=AGENTS, sla_names=SLAS, mailboxes=MAILBOXES)
    assert merge(ruleset.evaluate(facts())) == Outcome(
        priority="urgent", tags=("vip",), team=None, tier=None, assign="alice", sla=None,
        autoreply=None, escalate=False,
        reasons=('rule vip: from_domain "vip.example" matched lilei@vip.example',),
    )
    assert merge(ruleset.evaluate(facts(sender="someone@example.com"))) == Outcome()


def test_rules_run_in_order_and_stop_ends_evaluation() -> None:
    ruleset = rules(
        {"name": "first", "then": {"tags": ["one"]}},
        {"name": "vip", "if": {"group": ["vip"]}, "then": {"priority": "high", "stop": True}},
        {"name": "after", "then": {"tags": ["three"]}},
    )
    assert [d.rule for d in ruleset.evaluate(facts())] == ["first", "vip"]
    assert merge(ruleset.evaluate(facts())).tags == ("one",)
    # The stop only counts when its rule matches.
    assert [d.rule for d in ruleset.evaluate(facts(sender="a@b.example"))] == ["first", "after"]


def test_merge_later_scalars_win_tags_accumulate() -> None:
    decisions = [
        Decision("a", {"priority": "high", "tags": ("x", "y"), "team": "billing", "autoreply": "ack_vip",
                       "escalate": True, "assign": "round-robin"}, "why a"),
        Decision("b", {"priority": "low", "tags": ("y", "z"), "sla": "vip", "autoreply": False,
                       "assign": "bob", "tier": 2, "stop": True}, "why b"),
    ]
    assert merge(decisions) == Outcome(
        priority="low", tags=("x", "y", "z"), team="billing", tier=2, assign="bob", sla="vip",
        autoreply=False, escalate=True, reasons=("rule a: why a", "rule b: why b"),
    )
    assert merge([]) == Outcome()


def test_actions_are_normalised() -> None:
    ruleset = rules({"name": "r", "then": {
        "priority": "high", "tags": [" a ", "b", "a"], "team": "billing", "tier": 1, "assign": "least-loaded",
        "sla": "standard", "autoreply": "ack_vip", "escalate": False, "stop": False,
    }})
    [decision] = ruleset.evaluate(facts())
    assert dict(decision.actions) == {
        "priority": "high", "tags": ("a", "b"), "team": "billing", "tier": 1, "assign": "least-loaded",
        "sla": "standard", "autoreply": "ack_vip", "escalate": False, "stop": False,
    }
    with pytest.raises(TypeError):
        decision.actions["priority"] = "low"  # type: ignore[index]


def test_tag_triggered_escalation() -> None:
    data = tomllib.loads("""
[[rules]]
name = "crash"
on = ["tag"]
if = { tags_any = ["system_crash"] }
then = { tier = 2, escalate = true }
""")
    ruleset = parse_rules(data["rules"], None, None, file_name="inboxd.toml", agents=AGENTS,
                          sla_names=SLAS, mailboxes=MAILBOXES)
    crashed = frozenset({"billing", "system_crash"})
    assert ruleset.evaluate(facts(event="new", tags=crashed)) == []
    assert ruleset.evaluate(facts(event="tag")) == []
    outcome = merge(ruleset.evaluate(facts(event="tag", tags=crashed)))
    assert (outcome.tier, outcome.escalate) == (2, True)
    assert outcome.reasons == ('rule crash: tags_any "system_crash" present',)


# --- Assignment.

def test_round_robin_wraps_and_restarts() -> None:
    team = ["bob", "erin", "alice"]
    picks = {last: pick_assignee("round-robin", team, open_counts={}, last_assigned=last)
             for last in ["bob", "erin", "alice", None, "gone"]}
    assert picks == {"bob": "erin", "erin": "alice", "alice": "bob", None: "bob", "gone": "bob"}


def test_least_loaded_fewest_open_ties_by_team_order() -> None:
    team = ["bob", "erin", "alice"]
    assert pick_assignee("least-loaded", team, open_counts={"bob": 3, "erin": 1, "alice": 2},
                         last_assigned=None) == "erin"
    assert pick_assignee("least-loaded", team, open_counts={"bob": 2, "erin": 1, "alice": 1},
                         last_assigned="erin") == "erin"
    # An agent with no open tickets is missing from the counts and counts as zero.
    assert pick_assignee("least-loaded", team, open_counts={"bob": 1, "erin": 1},
                         last_assigned=None) == "alice"


def test_pick_assignee_empty_team_and_unknown_strategy() -> None:
    assert pick_assignee("round-robin", [], open_counts={}, last_assigned="bob") is None
    assert pick_assignee("least-loaded", (), open_counts={}, last_assigned=None) is None
    with pytest.raises(ValueError):
        pick_assignee("random", ["bob"], open_counts={}, last_assigned=None)


def test_strategy_may_use_the_team_of_an_earlier_rule_or_the_ticket() -> None:
    ruleset = rules(
        {"name": "billing", "if": {"mailbox": "billing"}, "then": {"team": "billing"}},
        {"name": "spread", "then": {"assign": "round-robin"}},
        {"name": "replies", "on": ["message"], "then": {"assign": "least-loaded"}},
    )
    outcome = merge(ruleset.evaluate(facts(mailbox="billing")))
    assert (outcome.team, outcome.assign) == ("billing", "round-robin")
    assert ruleset.teams["billing"] == ("bob", "erin")


# --- Config errors: one line each, naming the file, the key and the problem.

def rule(**parts: Any) -> dict:
    return {"name": "r", "then": {"tags": ["t"]}, **parts}


def test_error_unknown_condition_key_suggests() -> None:
    assert error(rule(**{"if": {"subjct": ["x"]}})) == (
        'inboxd.toml: rules[0].if.subjct: unknown key "subjct"; did you mean "subject"?')
    assert error(rule(**{"then": {"priorty": "high"}})) == (
        'inboxd.toml: rules[0].then.priorty: unknown key "priorty"; did you mean "priority"?')
    assert error(rule(colour={})) == 'inboxd.toml: rules[0].colour: unknown key "colour"'


def test_error_bad_regex() -> None:
    assert error(rule(**{"if": {"subject_regex": "(unclosed"}})) == (
        'inboxd.toml: rules[0].if.subject_regex: invalid regular expression "(unclosed":'
        " missing ), unterminated subpattern at position 0")
    assert error(rule(**{"if": {"header": {"x-spam": "[a-"}}})) == (
        'inboxd.toml: rules[0].if.header.x-spam: invalid regular expression "[a-":'
        " unterminated character set at position 0")


def test_error_unknown_agent() -> None:
    assert error(rule(then={"assign": "alcie"})) == (
        'inboxd.toml: rules[0].then.assign: unknown agent "alcie"; did you mean "alice"?')
    assert error(teams=[{"name": "billing", "agents": ["bob", "zed"]}]) == (
        'inboxd.toml: teams[0].agents[1]: unknown agent "zed"; known: "alice", "bob", "erin"')


def test_error_unknown_team() -> None:
    assert error(rule(then={"team": "biling"})) == (
        'inboxd.toml: rules[0].then.team: unknown team "biling"; did you mean "billing"?')
    assert error(rule(then={"team": "sales"}), teams=[]) == (
        'inboxd.toml: rules[0].then.team: unknown team "sales"; none is configured')


def test_error_unknown_group() -> None:
    assert error(rule(**{"if": {"group": ["vpi"]}})) == (
        'inboxd.toml: rules[0].if.group[0]: unknown customer group "vpi"; did you mean "vip"?')


def test_error_unknown_sla_and_mailbox() -> None:
    assert error(rule(then={"sla": "gold"})) == (
        'inboxd.toml: rules[0].then.sla: unknown SLA policy "gold"; known: "standard", "vip"')
    assert error(rule(**{"if": {"mailbox": "suport"}})) == (
        'inboxd.toml: rules[0].if.mailbox: unknown mailbox "suport"; did you mean "support"?')


def test_error_round_robin_without_a_team() -> None:
    assert error(rule(then={"assign": "round-robin"})) == (
        'inboxd.toml: rules[0].then.assign: "round-robin" needs a team: set team in this rule or an earlier one')
    assert error(rule(on=["message", "new"], then={"assign": "least-loaded"})) == (
        'inboxd.toml: rules[0].then.assign: "least-loaded" needs a team: set team in this rule or an earlier one')
    # On replies and tag changes the ticket's own team is used, so no team is needed here.
    rules(rule(on=["message"], then={"assign": "round-robin"}))


def test_error_bad_priority() -> None:
    assert error(rule(then={"priority": "critical"})) == (
        'inboxd.toml: rules[0].then.priority: must be one of "low", "normal", "high", "urgent", got "critical"')
    assert error(rule(**{"if": {"priority": ["high", "hgih"]}})) == (
        'inboxd.toml: rules[0].if.priority[1]: unknown priority "hgih"; did you mean "high"?')


def test_error_duplicate_rule_name() -> None:
    assert error(rule(), {"name": "other", "then": {"tags": ["x"]}}, rule()) == (
        'inboxd.toml: rules[2].name: duplicate rule name "r" (also rules[0])')


def test_error_other_shapes() -> None:
    assert error({"then": {"tags": ["x"]}}) == "inboxd.toml: rules[0].name: missing required key"
    assert error({"name": "r"}) == "inboxd.toml: rules[0].then: missing required key"
    assert error(rule(then={})) == "inboxd.toml: rules[0].then: must give at least one action"
    assert error(rule(on=["new", "tags"])) == (
        'inboxd.toml: rules[0].on[1]: must be one of "new", "message", "tag", got "tags"')
    assert error(rule(**{"if": {"subject": []}})) == "inboxd.toml: rules[0].if.subject: must not be empty"
    assert error(rule(**{"if": {"has_attachment": "yes"}})) == (
        'inboxd.toml: rules[0].if.has_attachment: expected true or false, got "yes"')
    assert error(rule(then={"tier": -1})) == "inboxd.toml: rules[0].then.tier: must be at least 0, got -1"
    assert error(rule(then={"autoreply": 3})) == (
        "inboxd.toml: rules[0].then.autoreply: expected a template name, true or false, got 3")
    assert error(groups=[{"name": "vip", "members": ["not an address"]}]) == (
        'inboxd.toml: customer_groups[0].members[0]: expected an address or "@domain", got "not an address"')


def test_error_sender_conditions_must_be_addresses_and_domains() -> None:
    assert error(rule(**{"if": {"from": ["ceo@bigcorp.example", "ceo"]}})) == (
        'inboxd.toml: rules[0].if.from[1]: expected an address, got "ceo"')
    assert error(rule(**{"if": {"from_domain": "vip example"}})) == (
        'inboxd.toml: rules[0].if.from_domain: expected a domain, got "vip example"')


# --- Facts from a parsed message.

def test_facts_for_message_skips_inline_parts() -> None:
    auto = AutoFacts(None, None, None, False, None, None, False, None)
    message = InboundMessage(
        message_id="<1@x>", in_reply_to=(), references=(), from_=Address("Li Lei", "LiLei@VIP.example"),
        to=(), cc=(), reply_to=(), date=None, subject="Crash", text="It crashed", html_only=False,
        attachments=(Attachment("logo.png", "image/png", 10, "0", None, True),
                     Attachment("log.txt", "Text/Plain", 10, "1", None, False)),
        auto=auto, defects=(), size=100,
    )
    got = facts_for(message, event="new", mailbox="support", headers={"X-Priority": "1"})
    assert got == Facts("new", "support", "lilei@vip.example", "Crash", "It crashed", {"x-priority": "1"},
                        ("text/plain",), frozenset(), "normal", None)


# --- Ten rules of every kind on one message.  Their speed (the brief asks for
# under 50 µs) is measured by bench/routing.py, never asserted here.

def test_ten_rules_of_every_kind_decide_together() -> None:
    ruleset = rules(
        {"name": "vip", "if": {"group": ["vip"]}, "then": {"priority": "urgent"}},
        {"name": "billing-box", "if": {"mailbox": "billing"}, "then": {"team": "billing"}},
        {"name": "refund", "if": {"subject": ["refund", "chargeback"]}, "then": {"tags": ["refund"]}},
        {"name": "order", "if": {"subject_regex": r"(?i)order \d+"}, "then": {"tags": ["order"]}},
        {"name": "invoice", "if": {"body": ["invoice", "receipt"]}, "then": {"tags": ["invoice"]}},
        {"name": "crash", "if": {"body_regex": r"Traceback|segfault"}, "then": {"priority": "high"}},
        {"name": "urgent-hdr", "if": {"header": {"x-priority": "^1"}}, "then": {"priority": "high"}},
        {"name": "pdf", "if": {"attachment_type": ["application/pdf"]}, "then": {"tags": ["pdf"]}},
        {"name": "domain", "if": {"from_domain": ["bigcorp.example"]}, "then": {"sla": "vip"}},
        {"name": "all", "if": {"priority": ["normal"], "has_attachment": True}, "then": {"tags": ["any"]}},
    )
    message = facts(body="Hello,\n\nmy invoice is wrong. " + "Some more text about the problem. " * 60)
    decisions = ruleset.evaluate(message)
    assert [d.rule for d in decisions] == ["vip", "refund", "order", "invoice", "urgent-hdr", "pdf", "all"]
    outcome = merge(decisions)
    # The later rule's priority wins; tags accumulate in rule order.
    assert outcome.priority == "high"
    assert outcome.tags == ("refund", "order", "invoice", "pdf", "any")
    assert (outcome.team, outcome.sla) == (None, None)

