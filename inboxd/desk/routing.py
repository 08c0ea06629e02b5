"""Decide what the admin's ``[[rules]]`` do to a ticket: parse them, match them, merge their actions.

Not to be confused with ``inboxd.desk.autoreply``, which only answers whether
we may send an automatic reply at all (loops, bulk mail, the budget): this
module is the admin's own rules about priority, tags, team and assignee.

This is the pure half of step (4): no database and no I/O.  ``parse_rules``
turns the ``[[rules]]``, ``[[customer_groups]]`` and ``[[teams]]`` sections,
as written, into a frozen ``RuleSet`` while ``inboxd.config`` reads the file
(through ``inboxd.desk.policies``), validating every name against the agents,
SLA policies and mailboxes the caller knows, and compiling every regex once.
``RuleSet.evaluate`` runs the rules in order over the ``Facts`` of one event
and returns one ``Decision`` per matching rule, each with a sentence saying why
it matched, so that the caller can record it in the ticket history.  ``merge``
folds the decisions into one ``Outcome`` and ``pick_assignee`` resolves the
"round-robin" and "least-loaded" strategies.

Conditions are compiled into small closures that return the reason when they
hold and None when they do not, so a rule stops at its first failing
condition and only a matching rule pays for building its sentence.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from json.encoder import encode_basestring as _json_quote
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from inboxd.config import EMAIL, Table, show
from inboxd.vocabulary import PRIORITIES

if TYPE_CHECKING:
    # Only for facts_for's signature: inboxd.config imports this module while
    # it reads the file, and a config check need not load the mail parser.
    from inboxd.mail.message import InboundMessage

__all__ = [
    "ACTION_KEYS",
    "ASSIGN_STRATEGIES",
    "CONDITION_KEYS",
    "EVENTS",
    "CustomerGroup",
    "Decision",
    "Facts",
    "Outcome",
    "Rule",
    "RuleSet",
    "facts_for",
    "merge",
    "parse_rules",
    "pick_assignee",
]

EVENTS = ("new", "message", "tag")
ASSIGN_STRATEGIES = ("round-robin", "least-loaded")
RULE_KEYS = ("name", "on", "if", "then")
GROUP_KEYS = ("name", "members")
TEAM_KEYS = ("name", "agents")
CONDITION_KEYS = (
    "mailbox", "from", "from_domain", "group", "subject", "subject_regex", "body",
    "body_regex", "header", "has_attachment", "attachment_type", "tags_any", "tags_all",
    "priority",
)
ACTION_KEYS = ("priority", "tags", "team", "tier", "assign", "sla", "autoreply", "escalate", "stop")
_DOMAIN = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")


@dataclass(frozen=True)
class Facts:
    """What the caller knows about the ticket when an event happens."""

    event: str                     # "new" | "message" | "tag"
    mailbox: str
    sender: str                    # lowercased address
    subject: str
    body: str
    headers: Mapping[str, str]     # lowercased header name -> value
    attachment_types: tuple[str, ...]
    tags: frozenset[str]
    priority: str
    team: str | None


@dataclass(frozen=True)
class Decision:
    rule: str
    actions: Mapping[str, Any]
    why: str


@dataclass(frozen=True)
class CustomerGroup:
    name: str
    addresses: frozenset[str]
    domains: frozenset[str]

    def contains(self, address: str) -> bool:
        address = address.lower()
        return address in self.addresses or address.rpartition("@")[2] in self.domains


# A compiled condition: the reason it holds for these facts, or None.
Test = Callable[["_View"], "str | None"]


@dataclass(frozen=True)
class Rule:
    name: str
    on: frozenset[str]
    conditions: tuple[Test, ...]
    actions: Mapping[str, Any]
    stop: bool

    def match(self, view: _View) -> str | None:
        """The sentence saying why every condition holds, or None if one does not."""
        reasons = []
        for test in self.conditions:
            reason = test(view)
            if reason is None:
                return None
            reasons.append(reason)
        return " and ".join(reasons) if reasons else "no conditions, matches every ticket"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    groups: Mapping[str, CustomerGroup]
    teams: Mapping[str, tuple[str, ...]]

    def evaluate(self, facts: Facts) -> list[Decision]:
        """The matching rules for this event, in order; a matching rule with stop ends the list."""
        view = _View(facts)
        decisions = []
        for rule in self.rules:
            if facts.event not in rule.on:
                continue
            why = rule.match(view)
            if why is None:
                continue
            decisions.append(Decision(rule.name, rule.actions, why))
            if rule.stop:
                break
        return decisions

    def in_group(self, address: str, group: str) -> bool:
        """Whether address belongs to the customer group; KeyError for a group not configured."""
        return self.groups[group].contains(address)


@dataclass(frozen=True)
class Outcome:
    """The merged effect of the decisions, applied in order.

    Later rules override the scalar actions and tags accumulate.  ``assign``
    may be a strategy ("round-robin", "least-loaded"): resolve it with
    ``pick_assignee`` over ``team`` or, when no rule set one, the ticket's
    team.  ``escalate`` asks for one tier up; when ``tier`` is also set, the
    caller treats ``tier`` as the target.  ``autoreply`` is a template name,
    False to suppress the acknowledgement, True for the default one, or None
    when no rule said.
    """

    priority: str | None = None
    tags: tuple[str, ...] = ()
    team: str | None = None
    tier: int | None = None
    assign: str | None = None
    sla: str | None = None
    autoreply: str | bool | None = None
    escalate: bool = False
    reasons: tuple[str, ...] = ()


def merge(decisions: list[Decision]) -> Outcome:
    scalars: dict[str, Any] = {}
    tags: dict[str, None] = {}
    for decision in decisions:
        for key, value in decision.actions.items():
            if key == "tags":
                tags.update(dict.fromkeys(value))
            elif key != "stop":
                scalars[key] = value
    return Outcome(
        **scalars,
        tags=tuple(tags),
        reasons=tuple(f"rule {d.rule}: {d.why}" for d in decisions),
    )


def pick_assignee(strategy: str, team_agents: Sequence[str], *, open_counts: Mapping[str, int],
                  last_assigned: str | None) -> str | None:
    """round-robin: the agent after last_assigned in team order (wrapping); least-loaded: fewest open
    tickets, ties by team order.  None for an empty team."""
    if strategy not in ASSIGN_STRATEGIES:
        raise ValueError(f"unknown assignment strategy {strategy!r}")
    if not team_agents:
        return None
    if strategy == "round-robin":
        # An agent who has left the team since the last assignment restarts the cycle.
        if last_assigned not in team_agents:
            return team_agents[0]
        return team_agents[(team_agents.index(last_assigned) + 1) % len(team_agents)]
    order = {agent: index for index, agent in enumerate(team_agents)}
    return min(team_agents, key=lambda agent: (open_counts.get(agent, 0), order[agent]))


def facts_for(message: InboundMessage, *, event: str, mailbox: str,
              headers: Mapping[str, str] | None = None, tags: Iterable[str] = (),
              priority: str = "normal", team: str | None = None) -> Facts:
    """Facts for one parsed message.

    Inline parts (logos in signatures, pasted screenshots) are not counted as
    attachments: nearly every business mail has a logo, and a rule about
    attachments means files the customer attached.
    """
    return Facts(
        event=event,
        mailbox=mailbox,
        sender=message.from_.email.lower() if message.from_ else "",
        subject=message.subject,
        body=message.text,
        headers={k.lower(): v for k, v in (headers or {}).items()},
        attachment_types=tuple(a.content_type.lower() for a in message.attachments if not a.inline),
        tags=frozenset(tags),
        priority=priority,
        team=team,
    )


class _View:
    """The facts of one evaluation, with the lower-cased texts computed once and only if a rule needs them."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts

    @cached_property
    def subject(self) -> str:
        return self.facts.subject.lower()

    @cached_property
    def body(self) -> str:
        return self.facts.body.lower()

    @cached_property
    def domain(self) -> str:
        return self.facts.sender.rpartition("@")[2]


# --- Parsing.

@dataclass(frozen=True)
class _Known:
    """The names a rule may refer to."""

    agents: set[str]
    sla_names: set[str]
    mailboxes: set[str]
    groups: Mapping[str, CustomerGroup]
    teams: Mapping[str, tuple[str, ...]]


def parse_rules(raw_rules: Any, raw_groups: Any, raw_teams: Any, *, file_name: str, agents: set[str],
                sla_names: set[str], mailboxes: set[str]) -> RuleSet:
    """Validate the raw sections (lists of dicts, or None when absent); ConfigError on the first problem."""
    top = Table(file_name, "", {
        "rules": raw_rules or [], "customer_groups": raw_groups or [], "teams": raw_teams or [],
    }, ("rules", "customer_groups", "teams"))
    groups = _groups(top.tables("customer_groups", GROUP_KEYS))
    teams = _teams(top.tables("teams", TEAM_KEYS), agents)
    known = _Known(agents, sla_names, mailboxes, MappingProxyType(groups), MappingProxyType(teams))

    rules: list[Rule] = []
    # A strategy on a new ticket needs a team from its own rule or an earlier one:
    # a new ticket has none of its own yet.
    team_set_on_new = False
    for index, table in enumerate(top.tables("rules", RULE_KEYS)):
        rule = _rule(table, known)
        for other_index, other in enumerate(rules):
            if other.name == rule.name:
                table.fail("name", f"duplicate rule name {show(rule.name)} (also rules[{other_index}])")
        assign = rule.actions.get("assign")
        if "new" in rule.on and assign in ASSIGN_STRATEGIES and "team" not in rule.actions \
                and not team_set_on_new:
            table.fail("then.assign", f"{show(assign)} needs a team: set team in this rule or an earlier one")
        team_set_on_new = team_set_on_new or ("new" in rule.on and "team" in rule.actions)
        rules.append(rule)
    return RuleSet(tuple(rules), known.groups, known.teams)


def _groups(tables: list[Table]) -> dict[str, CustomerGroup]:
    groups: dict[str, CustomerGroup] = {}
    for table in tables:
        name = _label(table, "name")
        if name in groups:
            table.fail("name", f"duplicate customer group {show(name)}")
        addresses, domains = set(), set()
        for index, member in enumerate(table.strings("members", ())):
            member = member.strip().lower()
            if member.startswith("@") and _DOMAIN.fullmatch(member[1:]):
                domains.add(member[1:])
            elif EMAIL.fullmatch(member):
                addresses.add(member)
            else:
                table.fail(f"members[{index}]", f"expected an address or \"@domain\", got {show(member)}")
        groups[name] = CustomerGroup(name, frozenset(addresses), frozenset(domains))
    return groups


def _teams(tables: list[Table], agents: set[str]) -> dict[str, tuple[str, ...]]:
    teams: dict[str, tuple[str, ...]] = {}
    for table in tables:
        name = _label(table, "name")
        if name in teams:
            table.fail("name", f"duplicate team {show(name)}")
        members = table.strings("agents", ())
        for index, agent in enumerate(members):
            if agent not in agents:
                table.fail(f"agents[{index}]", _unknown("agent", agent, agents))
            if agent in members[:index]:
                table.fail(f"agents[{index}]", f"{show(agent)} is listed twice")
        teams[name] = members
    return teams


def _rule(table: Table, known: _Known) -> Rule:
    name = _label(table, "name")
    on = _names(table, "on", ["new"])
    for index, event in enumerate(on):
        if event not in EVENTS:
            where = f"on[{index}]" if isinstance(table.data.get("on"), list) else "on"
            options = ", ".join(show(e) for e in EVENTS)
            table.fail(where, f"must be one of {options}, got {show(event)}")
    conditions = table.table("if", CONDITION_KEYS)
    then = table.table("then", ACTION_KEYS, required=True)
    if not then.data:
        table.fail("then", "must give at least one action")
    actions = {key: _ACTIONS[key](then, key, known) for key in then.data}
    return Rule(
        name=name,
        on=frozenset(on),
        conditions=tuple(_CONDITIONS[key](conditions, key, known) for key in conditions.data),
        actions=MappingProxyType(actions),
        stop=bool(actions.get("stop", False)),
    )


def _label(table: Table, key: str) -> str:
    """A name that ends up in history lines: one non-empty line."""
    value = table.string(key)
    if not value.strip() or "\n" in value or "\r" in value:
        table.fail(key, f"must be a non-empty single line, got {show(value)}")
    return value


def _names(table: Table, key: str, default: list[str] | None = None) -> list[str]:
    """A string or a non-empty list of non-empty strings."""
    value = table.get(key, default)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        table.fail(key, f"expected a string or a list of strings, got {show(value)}")
    if not items:
        table.fail(key, "must not be empty")
    for index, item in enumerate(items):
        if not item.strip():
            table.fail(f"{key}[{index}]" if isinstance(value, list) else key, "must not be empty")
    return items


def _regex(table: Table, key: str, pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        table.fail(key, f"expected a regular expression string, got {show(pattern)}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        table.fail(key, f"invalid regular expression {show(pattern)}: {exc}")


def _unknown(kind: str, value: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(value, known, n=1)
    if close:
        return f"unknown {kind} {show(value)}; did you mean {show(close[0])}?"
    if known:
        return f"unknown {kind} {show(value)}; known: {', '.join(show(k) for k in known)}"
    return f"unknown {kind} {show(value)}; none is configured"


def _known_each(table: Table, key: str, kind: str, known: Iterable[str]) -> list[str]:
    values = _names(table, key)
    for index, value in enumerate(values):
        if value not in known:
            where = f"{key}[{index}]" if isinstance(table.data[key], list) else key
            table.fail(where, _unknown(kind, value, known))
    return values


def _shaped(table: Table, key: str, shape: re.Pattern[str], what: str,
            clean: Callable[[str], str]) -> list[str]:
    """Addresses or domains, lower-cased; one that can never match a sender is a mistake worth reporting."""
    values = []
    for index, raw in enumerate(_names(table, key)):
        value = clean(raw.strip().lower())
        if not shape.fullmatch(value):
            where = f"{key}[{index}]" if isinstance(table.data[key], list) else key
            table.fail(where, f"expected {what}, got {show(raw)}")
        values.append(value)
    return values


# --- Conditions: each builder validates its value and returns the compiled test.
# The constant parts of each reason are quoted once here, because a matching
# rule pays for its sentence on every evaluation.

def _quote(text: str) -> str:
    """A matched piece of mail text, quoted on one line and kept short."""
    return _json_quote(text if len(text) <= 60 else text[:57] + "...")


def _if_mailbox(table: Table, key: str, known: _Known) -> Test:
    reasons = {m: f"mailbox {show(m)} matched" for m in _known_each(table, key, "mailbox", known.mailboxes)}
    return lambda v: reasons.get(v.facts.mailbox)


def _if_from(table: Table, key: str, known: _Known) -> Test:
    addresses = _shaped(table, key, EMAIL, "an address", lambda a: a)
    reasons = {a: f"from {show(a)} matched" for a in addresses}
    return lambda v: reasons.get(v.facts.sender)


def _if_from_domain(table: Table, key: str, known: _Known) -> Test:
    domains = _shaped(table, key, _DOMAIN, "a domain", lambda d: d.removeprefix("@"))
    reasons = {d: f"from_domain {show(d)} matched " for d in domains}

    def test(v: _View) -> str | None:
        reason = reasons.get(v.domain)
        return None if reason is None else reason + v.facts.sender
    return test


def _if_group(table: Table, key: str, known: _Known) -> Test:
    groups = [(known.groups[n], f"group {show(n)} matched ")
              for n in _known_each(table, key, "customer group", known.groups)]

    def test(v: _View) -> str | None:
        for group, reason in groups:
            if group.contains(v.facts.sender):
                return reason + v.facts.sender
        return None
    return test


def _keywords(field: str) -> Callable[[Table, str, _Known], Test]:
    """Subject or body keywords: a case-insensitive substring, any one of them."""
    def build(table: Table, key: str, known: _Known) -> Test:
        words = [(w.lower(), f"{key} contains {show(w)}") for w in _names(table, key)]

        def test(v: _View) -> str | None:
            text = getattr(v, field)
            for lowered, reason in words:
                if lowered in text:
                    return reason
            return None
        return test
    return build


def _pattern(field: str) -> Callable[[Table, str, _Known], Test]:
    """Subject or body regex, searched as written (add (?i) to ignore case)."""
    def build(table: Table, key: str, known: _Known) -> Test:
        regex = _regex(table, key, table.get(key))
        reason = f"{key} {show(regex.pattern)} matched "

        def test(v: _View) -> str | None:
            found = regex.search(getattr(v.facts, field))
            return None if found is None else reason + _quote(found[0])
        return test
    return build


def _if_header(table: Table, key: str, known: _Known) -> Test:
    """Every named header must be present and its value match its regex."""
    value = table.get(key)
    if not isinstance(value, dict) or not value:
        table.fail(key, f"expected a table of header name = regular expression, got {show(value)}")
    patterns = []
    for name, pattern in value.items():
        regex = _regex(table, f"{key}.{name}", pattern)
        patterns.append((name.lower(), regex, f"header {name.lower()} {show(regex.pattern)} matched "))

    def test(v: _View) -> str | None:
        reasons = []
        for name, regex, reason in patterns:
            header = v.facts.headers.get(name)
            if header is None or not regex.search(header):
                return None
            reasons.append(reason + _quote(header))
        return " and ".join(reasons)
    return test


def _if_has_attachment(table: Table, key: str, known: _Known) -> Test:
    wanted = table.boolean(key, False)
    reason = "has an attachment" if wanted else "has no attachment"
    return lambda v: reason if bool(v.facts.attachment_types) == wanted else None


def _if_attachment_type(table: Table, key: str, known: _Known) -> Test:
    prefixes = [(p.strip().lower(), f"attachment_type {show(p.strip().lower())} matched ")
                for p in _names(table, key)]

    def test(v: _View) -> str | None:
        for kind in v.facts.attachment_types:
            for prefix, reason in prefixes:
                if kind.startswith(prefix):
                    return reason + kind
        return None
    return test


def _if_tags_any(table: Table, key: str, known: _Known) -> Test:
    reasons = [(t, f"tags_any {show(t)} present") for t in _names(table, key)]

    def test(v: _View) -> str | None:
        for tag, reason in reasons:
            if tag in v.facts.tags:
                return reason
        return None
    return test


def _if_tags_all(table: Table, key: str, known: _Known) -> Test:
    wanted = frozenset(_names(table, key))
    reason = f"tags_all {show(sorted(wanted))} present"
    return lambda v: reason if wanted <= v.facts.tags else None


def _if_priority(table: Table, key: str, known: _Known) -> Test:
    reasons = {p: f"priority {show(p)} matched" for p in _known_each(table, key, "priority", PRIORITIES)}
    return lambda v: reasons.get(v.facts.priority)


_CONDITIONS: Mapping[str, Callable[[Table, str, _Known], Test]] = MappingProxyType({
    "mailbox": _if_mailbox,
    "from": _if_from,
    "from_domain": _if_from_domain,
    "group": _if_group,
    "subject": _keywords("subject"),
    "subject_regex": _pattern("subject"),
    "body": _keywords("body"),
    "body_regex": _pattern("body"),
    "header": _if_header,
    "has_attachment": _if_has_attachment,
    "attachment_type": _if_attachment_type,
    "tags_any": _if_tags_any,
    "tags_all": _if_tags_all,
    "priority": _if_priority,
})


# --- Actions: each reader validates its value and returns it normalised.

def _then_priority(table: Table, key: str, known: _Known) -> str:
    return table.choice(key, "normal", PRIORITIES)


def _then_tags(table: Table, key: str, known: _Known) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.strip() for t in _names(table, key)))


def _then_team(table: Table, key: str, known: _Known) -> str:
    team = table.string(key)
    if team not in known.teams:
        table.fail(key, _unknown("team", team, known.teams))
    return team


def _then_tier(table: Table, key: str, known: _Known) -> int:
    return table.integer(key, None, low=0)


def _then_assign(table: Table, key: str, known: _Known) -> str:
    agent = table.string(key)
    if agent not in ASSIGN_STRATEGIES and agent not in known.agents:
        table.fail(key, _unknown("agent", agent, [*known.agents, *ASSIGN_STRATEGIES]))
    return agent


def _then_sla(table: Table, key: str, known: _Known) -> str:
    sla = table.string(key)
    if sla not in known.sla_names:
        table.fail(key, _unknown("SLA policy", sla, known.sla_names))
    return sla


def _then_autoreply(table: Table, key: str, known: _Known) -> str | bool:
    value = table.get(key)
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.strip():
        table.fail(key, f"expected a template name, true or false, got {show(value)}")
    return value


def _then_flag(table: Table, key: str, known: _Known) -> bool:
    return table.boolean(key, False)


_ACTIONS: Mapping[str, Callable[[Table, str, _Known], Any]] = MappingProxyType({
    "priority": _then_priority,
    "tags": _then_tags,
    "team": _then_team,
    "tier": _then_tier,
    "assign": _then_assign,
    "sla": _then_sla,
    "autoreply": _then_autoreply,
    "escalate": _then_flag,
    "stop": _then_flag,
})
