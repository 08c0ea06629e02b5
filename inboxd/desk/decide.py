"""Step 3, the decision: what one incoming mail means for the desk.

This module's one job is to decide a message's disposition, and to write
nothing.  `decide` takes the parsed message, what the store knows (a
read-only `Lookup`), the desk's settings and policies, and `now`, and
returns a frozen `Disposition`: who wrote it and what it is, which ticket it
goes on (and which tickets of its conversation join that one), how the
ticket's status moves, what the routing rules decided, whether an
acknowledgement goes out and which rule decided, a survey answer, the
addresses a bounce marks, the relay, who is notified, and the reasons.
`inboxd.desk.apply` then writes it through the store layer, one change per
step in the order of `inboxd.desk.ingest.PIPELINE` (Mailman's chains before
its pipeline).

Everything here is a function of data: threading (`threads.find_ticket`),
the status a message moves a ticket to, routing (`routing.merge`,
`pick_assignee`), the loop rules of acknowledgements
(`autoreply.may_auto_reply`) and survey answers (`csat.parse_answer`).  So
ingest is tested as a table of (raw mail, store facts, now) -> disposition,
with no server and no database (tests/test_decide.py).

The lookup's reads of tickets lock them (PostgreSQL; see
`inboxd.store.lookup`) until the batch commits, so what apply writes was
decided from the facts as they still are.  The decision foresees the
apply stage's own writes where a later decision depends on them: the state
of a conversation's joined tickets (`joined_state`), and the open-ticket
counts least-loaded assignment reads (`_counts_after`).
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from inboxd.config import AgentSettings, Settings
from inboxd.desk import authresults, confirm, mailcommands, tiers
from inboxd.desk.autoreply import AckContext, is_automatic, may_auto_reply
from inboxd.desk.csat import is_low, legacy_score, parse_answer, parse_survey_address
from inboxd.desk.csat import label as csat_label
from inboxd.desk.language import LanguageChoice
from inboxd.desk.language import choose as choose_language
from inboxd.desk.policies import Policies
from inboxd.desk.routing import ASSIGN_STRATEGIES, Outcome, facts_for, merge, pick_assignee
from inboxd.desk.threads import ThreadLookup, ThreadMatch, TicketTag, find_ticket, joined_status
from inboxd.mail.bounces import Bounce, detect_bounce
from inboxd.mail.largemail import header_block
from inboxd.mail.message import InboundMessage
from inboxd.outbound.compose import ticket_ref_from_message_id
from inboxd.outbound.loop import loop_header_value
from inboxd.outbound.outbox import AckCounts, budget_key
from inboxd.store.lookup import TicketFacts
from inboxd.vocabulary import OPEN_STATUSES, PRIORITIES


class Done(Exception):
    """Control exception: the message needs no further steps (str: why)."""


class Quarantined(Exception):
    """Control exception: file the message in quarantine with this reason."""


class Lookup(ThreadLookup, Protocol):
    """What deciding needs to know about the store; reads only.

    `inboxd.store.lookup.StoreLookup` implements the ticket, survey and
    routing parts, `inboxd.desk.ingest.FilingLookup` adds the outbox's.
    """

    def ticket(self, pk: int) -> TicketFacts:
        """The ticket's facts."""

    def tickets_to_join(self, pks: list[int]) -> dict[int, TicketFacts]:
        """The unmerged tickets among `pks`, by id."""

    def csat_by_token(self, token: str) -> int | None:
        """The survey sent with this token."""

    def csat_by_message_ids(self, ids: list[str]) -> int | None:
        """A survey whose mail has one of these Message-IDs."""

    def csat_ticket(self, csat_id: int) -> int:
        """The (surviving) ticket a survey was sent about."""

    def csat_scored(self, csat_id: int) -> bool:
        """Whether the survey was sent with scores (False: before migration 0013, positions 1 = best)."""

    def open_counts(self, open_statuses: tuple[str, ...]) -> dict[str, int]:
        """How many open tickets each assignee has."""

    def last_rule_assignee(self, team: str | None) -> str | None:
        """Whom the rules last assigned a ticket of `team` to."""

    def sent_to(self, message_id: str | None) -> tuple[str, ...] | None:
        """The recipients of the mail we sent with this Message-ID, or None."""

    def ack_counts(self, address: str, now: datetime, *, count_domain: bool) -> AckCounts:
        """Acknowledgements that went to `address` (and its domain) lately."""

    def bouncing_since(self, address: str, now: datetime, expiry: timedelta) -> datetime | None:
        """When mail to `address` last bounced for good, while that mark is in force."""


@dataclass(frozen=True)
class Desk:
    """The settings deciding reads, prepared once per process."""

    settings: Settings
    policies: Policies
    tags: TicketTag
    own_addresses: frozenset[str]
    own_domains: frozenset[str]

    @classmethod
    def of(cls, settings: Settings, policies: Policies) -> Desk:
        return cls(settings, policies, TicketTag(settings.tickets.id_format, settings.tickets.tag_format),
                   frozenset(settings.own_addresses()), frozenset(m.domain for m in settings.mailboxes))


@dataclass(frozen=True)
class Incoming:
    """The message to decide on, and where and when it arrived."""

    msg: InboundMessage
    raw: bytes
    mailbox: str
    folder: str
    at: datetime            # when the server received it (see ingest.arrival)
    history: bool = False   # it arrived before its folder's cut-off
    key: str = ""           # its stored message key (the Message-ID, or sha256:...)


# -- the disposition ---------------------------------------------------------------


@dataclass(frozen=True)
class SurveyAnswer:
    """A satisfaction survey answered by this mail."""

    csat_id: int
    rating: int | None                # None: a reply that gives no rating, kept as a comment
    comment: str
    label: str = ""
    low: bool = False
    followup: tuple[str, ...] = ()    # supervisors and admins told of a low rating; the assignee of a comment


@dataclass(frozen=True)
class BounceMarks:
    """What a bounce report marks: the addresses that bounced for good, until when, or why none."""

    marked: tuple[str, ...] = ()
    until: datetime | None = None
    not_marked: str = ""


@dataclass(frozen=True)
class JoinedState:
    """The state of the ticket that absorbs the others of its conversation (see ingest.join_threads)."""

    status: str
    closed_at: datetime | None
    solved_at: datetime | None
    priority: str
    assignee: str | None
    team: str | None
    tier: int
    escalated: bool
    sla_policy: str | None
    history: bool
    created_at: datetime | None
    first_response_at: datetime | None


@dataclass(frozen=True)
class Join:
    """Other tickets of the conversation, merged into the survivor."""

    survivor: TicketFacts               # before the join
    others: tuple[TicketFacts, ...]
    links: tuple[str, ...]              # for each of `others`, the header link that connects it
    state: JoinedState

    @property
    def change(self) -> dict:
        before, after = self.survivor.status, self.state.status
        return {"status_before": before, "status_after": after} if before != after else {}


@dataclass(frozen=True)
class TicketChoice:
    """Which ticket the message goes on, and how its status moves."""

    pk: int | None                      # None: a new ticket is opened
    ref: str                            # "" for a new ticket (its number is drawn when applied)
    reason: str                         # why this ticket (threading's reason)
    status_before: str | None           # None for a new ticket
    status_after: str
    closed_at: datetime | None = None   # a new history ticket filed as closed
    follows: TicketFacts | None = None  # a new ticket following up on this closed one
    follows_reason: str = ""
    # A new ticket's subject and requester (whose name None: no customer row).
    subject: str = ""
    requester: str = ""
    requester_name: str | None = None

    @property
    def is_new(self) -> bool:
        return self.pk is None


@dataclass(frozen=True)
class Routing:
    """What the admin's [[rules]] decided about a customer message's ticket."""

    team_on_new: str | None = None      # the mailbox's team, on a new ticket
    matched: bool = False               # whether any rule matched (else nothing below is applied)
    priority: str | None = None
    tags: tuple[str, ...] = ()
    team: str | None = None
    tier: int = 1
    escalate: bool = False
    assignee: str | None = None
    sla: str | None = None
    reasons: tuple[str, ...] = ()
    ack_template: str | bool | None = None   # a template name, False: no acknowledgement, None: no rule said
    # A rule that escalates (escalate, or a higher tier) without naming an
    # assignee: who takes the ticket at its new tier (inboxd.desk.tiers).
    escalation: tiers.Routed | None = None


@dataclass(frozen=True)
class Ack:
    """The acknowledgement of a new ticket: whether it goes, with which template, and the rule that decided."""

    send: bool
    template: str = "ack"
    rule: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Relay:
    """An agent's answer by email, to go on to the customer (or why not)."""

    send: bool
    reason: str = ""


@dataclass(frozen=True)
class Disposition:
    """Everything filing one message will do, decided before any of it is written."""

    kind: str                              # vocabulary.KINDS
    direction: str                         # vocabulary.DIRECTIONS
    ticket: TicketChoice
    agent: AgentSettings | None = None     # the agent who wrote it
    note_reason: str = ""
    join: Join | None = None
    bounce: Bounce | None = None
    bounce_marks: BounceMarks | None = None
    csat: SurveyAnswer | None = None
    confirm: confirm.Confirmation | None = None   # a customer's reply to a solved ticket: close or reopen
    routing: Routing | None = None
    clock: bool = False                    # refresh the ticket's SLA due times
    ack: Ack | None = None                 # None: no acknowledgement was considered
    relay: Relay | None = None
    notify: tuple[str, ...] = ()           # agents told of a customer's mail
    reply_text: str = ""                   # the new text above the quote
    sender: str = ""                       # the address it is from ("mailer-daemon" for a bounce with none)
    reasons: tuple[str, ...] = ()
    # The customer's written language (zh or zh-Hant for a Chinese mailbox), chosen on a new ticket.
    language: LanguageChoice | None = None
    # An agent's commands by mail (inboxd.desk.mailcommands): run once the mail is filed, or refused.
    commands: mailcommands.Plan | None = None


# -- deciding ------------------------------------------------------------------------


def _reply_text(text: str) -> str:
    """The new text above the quote (inboxd.mail.quotes), for mail parsed without it."""
    # Imported here: the daemon rarely needs it (the parser worker strips the quotes), and its
    # patterns cost every start about 10 ms to compile.
    from inboxd.mail.quotes import reply_text

    return reply_text(text)


def decide(m: Incoming, lookup: Lookup, desk: Desk, now: datetime) -> Disposition:
    """The disposition of one message; raises `Done` for mail that is not
    filed and `Quarantined` for mail that cannot be."""
    settings = desk.settings
    mailbox = settings.mailbox(m.mailbox)
    reasons: list[str] = []
    # The parser worker has usually stripped the quotes already.
    text = m.msg.reply_text if m.msg.reply_text is not None else _reply_text(m.msg.text)
    who = classify(m, lookup, desk, text)
    reasons.append(who.why)
    match, who = thread(m, who, lookup, desk)
    reasons.append(f"ticket: {match.reason}")
    if who.text is not None:
        # The command lines are the desk's, not the customer's or the note's.
        text = who.text
    join, match, rows = plan_join(match, lookup, m.at, m.history, settings.tickets.reopen_window)
    if join is not None:
        reasons.append(f"joins {', '.join(o.ref for o in join.others)} into {join.survivor.ref}")
    ticket, touched = choose_ticket(m, who, match, rows, join, lookup, desk)
    confirmation = confirm_solved(m, who, ticket, text, desk)
    if confirmation is not None and confirmation.close:
        # 待确认: the customer confirmed the solution, so the ticket closes instead of reopening.
        ticket = replace(ticket, status_after="closed")
        touched = replace(touched, status="closed") if touched is not None else None
        reasons.append(f"confirmed: {confirmation.reason}")
    elif confirmation is not None:
        reasons.append(f"not a confirmation: {confirmation.reason}")
    if ticket.follows is not None:
        reasons.append(f"follows up on {ticket.follows.ref}: closed too long ago to reopen")
    elif ticket.status_before is not None and ticket.status_before != ticket.status_after:
        reasons.append(f"status {ticket.status_before} -> {ticket.status_after}")
    # The ticket the message is on, as it will be (None: a new one).
    current = None if ticket.is_new else touched
    routing = None
    if who.kind == "customer":
        routing = route(m, ticket, current, touched, join, lookup, desk)
        reasons.extend(routing.reasons)
    ack = acknowledge(m, who.kind, ticket, routing, lookup, desk, now)
    if ack is not None:
        reasons.append("acknowledged" if ack.send else f"no acknowledgement ({ack.rule}: {ack.reason})")
    relay = None
    if who.relay:
        relay = Relay(True) if text.strip() else Relay(False, "the agent's mail has no new text")
        reasons.append("relayed to the customer" if relay.send else f"not relayed: {relay.reason}")
    csat = None
    if who.csat is not None:
        csat = survey_answer(who.csat, m.history, mailbox.language, desk,
                             assignee=touched.assignee if touched is not None else None)
        if csat.low and not m.history:
            reasons.append(f"a low rating ({csat.label}): followed up")
        elif csat.rating is None and csat.followup:
            reasons.append(f"no rating in it: kept as a comment, {', '.join(csat.followup)} told")
    marks = None
    if who.bounce is not None and not m.history:
        # An old bounce says nothing about the address today.
        marks = bounce_marks(who.bounce, lookup, now, settings.autoreply.bounce_expiry)
        if who.bounce.permanent:
            reasons.append(f"marks {', '.join(marks.marked)} as bouncing" if marks.marked
                           else f"marks nobody: {marks.not_marked}")
    notify: tuple[str, ...] = ()
    if who.kind == "customer" and not m.history:
        notify = watchers(m.mailbox, ticket, current, routing, settings)
    language = None
    if who.kind == "customer" and ticket.is_new:
        language = choose_language(mailbox.language, charsets=m.msg.charsets,
                                   content_language=m.msg.content_language, text=text)
        if language.language != mailbox.language:
            reasons.append(f"written to in {language.language}: {language.reason}")
    return Disposition(
        kind=who.kind, direction=who.direction, ticket=ticket, agent=who.agent, note_reason=who.note_reason,
        join=join, bounce=who.bounce, bounce_marks=marks, csat=csat, confirm=confirmation, routing=routing,
        clock=who.kind in ("customer", "agent") and not m.history, ack=ack, relay=relay, notify=notify,
        reply_text=text, sender=_sender_address(m.msg), reasons=tuple(reasons), language=language,
        commands=who.commands)


def _sender_address(msg: InboundMessage) -> str:
    sender = msg.from_ or (msg.reply_to[0] if msg.reply_to else None)
    return sender.email if sender else "mailer-daemon"


# -- who wrote it, and what it is ------------------------------------------------------


@dataclass(frozen=True)
class Who:
    direction: str = "in"
    kind: str = "customer"
    agent: AgentSettings | None = None
    bounce: Bounce | None = None
    csat: tuple[int, int | None, str] | None = None     # (survey id, score or None, comment)
    relay: bool = False
    note_reason: str = ""
    why: str = "customer mail"
    commands: mailcommands.Plan | None = None
    text: str | None = None          # the reply text without its command lines


def classify(m: Incoming, lookup: Lookup, desk: Desk, text: str) -> Who:
    """Who wrote this and what is it: customer mail, an agent's reply, a note, a bounce, a survey answer."""
    msg, settings = m.msg, desk.settings
    mailbox = settings.mailbox(m.mailbox)
    sender = msg.from_.email if msg.from_ else ""
    if m.folder == mailbox.imap.sent_folder:
        if msg.auto.loop or (msg.message_id and ticket_ref_from_message_id(msg.message_id)):
            # Automatic mail of an inboxd (another store's, or ours from
            # before a restore): a record at most, never an agent's reply.
            return Who("out", "auto", why="an inboxd's automatic mail in the Sent folder")
        # The shared mailbox's Sent folder: what the team sent from their clients.
        return Who("out", "agent", agent=settings.agent_by_email(sender), why="the team's mail in the Sent folder")
    bounce = detect_bounce(m.raw, msg)
    if bounce is not None:
        return Who(kind="bounce", bounce=bounce, why=f"a bounce ({bounce.reason or 'delivery report'})")
    answer = _csat_answer(msg, text, lookup, desk)
    if answer is not None:
        why = (f"a satisfaction survey answer ({answer[1]})" if answer[1] is not None
               else "a reply to a satisfaction survey that gives no rating")
        return Who(kind="csat", csat=answer, why=why)
    agent = settings.agent_by_email(sender) if sender else None
    if agent is None:
        return Who()
    automatic = is_automatic(msg)
    first_line = msg.text.lstrip().split("\n", 1)[0].strip().lower()
    to_note = any(a.email == mailbox.note_address() for a in (*msg.to, *msg.cc))
    if automatic:
        # An agent's out-of-office reply is kept for the record, never relayed.
        why = f"automatic mail from agent {agent.name}: {automatic}"
        return Who(kind="note", agent=agent, note_reason=why, why=why)
    parsed = mailcommands.parse(text) if not m.history else mailcommands.Parsed()
    if parsed.actions or parsed.errors:
        return _commands(m, parsed, agent, desk, to_note)
    if parsed.note or first_line.startswith("#note") or to_note:
        return Who(kind="note", agent=agent, note_reason="internal note by email", why="internal note by email")
    if m.history:
        # An agent's mail from the past is a record; it was answered long ago.
        return Who("out", "agent", agent=agent, why=f"agent {agent.name}'s mail from the past")
    return Who("out", "agent", agent=agent, relay=True, why=f"agent {agent.name}'s answer, to be relayed")


def _commands(m: Incoming, parsed: mailcommands.Parsed, agent: AgentSettings, desk: Desk, to_note: bool) -> Who:
    """An agent's mail that starts with command lines (see inboxd.desk.mailcommands).

    The commands run once the mail is filed, when the sender is trusted;
    else none runs and the agent is told why.  The rest of the mail goes to
    the customer; it is a note after #note, to the +note address, and when
    the commands are refused (it was meant to go with them) or nothing is left.
    """
    trust = sender_trust(m, agent, desk)
    plan = mailcommands.plan(parsed, trust.trusted, trust.reason)
    lines = ", ".join(c.line for c in parsed.commands) or ", ".join(e.line for e in parsed.errors)
    if plan.refused:
        why = f"commands by mail from agent {agent.name} refused ({lines}): {plan.refused[0].reason}"
        return Who(kind="note", agent=agent, note_reason=why, why=why, commands=plan)
    why = f"commands by mail from agent {agent.name}: {lines} ({trust.reason})"
    if parsed.note or to_note or not parsed.rest.strip():
        return Who(kind="note", agent=agent, note_reason=why, why=why, commands=plan, text=parsed.rest)
    return Who("out", "agent", agent=agent, relay=True, why=f"{why}; the rest relayed", commands=plan,
               text=parsed.rest)


def sender_trust(m: Incoming, agent: AgentSettings, desk: Desk) -> authresults.Trust:
    """Whether the agent's mail may carry commands: [agent_mail] trust, and the receiving server's verdict."""
    config = desk.settings.agent_mail
    if config.trust != "auth-results":
        return authresults.Trust(False, 'commands by mail are off ([agent_mail] trust is "none")')
    return authresults.check(authresults.headers_of(m.raw), agent.email, config.authserv_id)


def _csat_answer(msg: InboundMessage, text: str, lookup: Lookup,
                 desk: Desk) -> tuple[int, int | None, str] | None:
    """(survey id, score, comment) when this mail answers a satisfaction survey.

    A reply to the survey that gives no score (a question, a thank-you) is
    still its answer, with score None: it is kept as a comment and never
    reopens the ticket.  A survey sent before scores reads its link digits
    and a bare digit as positions (csat.legacy_score).
    """
    scale = desk.policies.csat.scale
    scores = {level.score for level in scale}
    for addr in (*msg.to, *msg.cc):
        # Nearly every mail is no survey answer: a substring test spares the
        # address parser (a survey address always holds "+csat-").
        if "+csat-" not in addr.email.lower():
            continue
        parsed = parse_survey_address(addr.email)
        if parsed is None:
            continue
        csat_id = lookup.csat_by_token(parsed[0])
        if csat_id is None:
            continue
        legacy = not lookup.csat_scored(csat_id)
        score = legacy_score(parsed[1]) if legacy else parsed[1]
        answer = parse_answer(text, scale, legacy=legacy)
        comment = answer.comment if answer else text.strip()
        return csat_id, score if score in scores else None, comment
    parents = [*msg.in_reply_to, *msg.references]
    if parents:
        csat_id = lookup.csat_by_message_ids(parents)
        if csat_id is not None:
            answer = parse_answer(text, scale, legacy=not lookup.csat_scored(csat_id))
            if answer is not None:
                return csat_id, answer.rating, answer.comment
            return csat_id, None, text.strip()
    return None


# -- which ticket ------------------------------------------------------------------------


def thread(m: Incoming, who: Who, lookup: Lookup, desk: Desk) -> tuple[ThreadMatch, Who]:
    """The ticket this message continues, or a new one; agents' mail about no ticket is decided here."""
    if who.csat is not None:
        return ThreadMatch(lookup.csat_ticket(who.csat[0]), "satisfaction survey answer"), who
    if who.bounce is not None and who.bounce.original_message_id:
        mid = who.bounce.original_message_id
        known = lookup.tickets_by_message_ids([mid])
        ref = ticket_ref_from_message_id(mid)
        pk = known.get(mid) or (lookup.ticket_by_ref(ref) if ref else None)
        if pk is not None:
            return ThreadMatch(pk, f"bounce of <{mid}>"), who
    match = find_ticket(m.msg, lookup, desk.tags, ticket_ref_from_message_id)
    if match.is_new and who.kind == "auto":
        raise Done("automatic mail in the Sent folder about no ticket")
    if match.is_new and who.kind in ("agent", "note"):
        if who.direction == "out" and who.agent is None or m.folder == desk.settings.mailbox(m.mailbox).imap.sent_folder:
            # Sent mail about no ticket is the team's own business.
            raise Done("Sent mail about no ticket")
        # An agent writing to the shared address about no ticket (say, a
        # forwarded customer mail) opens one like anybody else, and nothing
        # is relayed or noted.
        who = replace(who, direction="in", kind="customer", relay=False, commands=None, text=None,
                      why=f"agent {who.agent.name} writing about no ticket: a customer's mail")
    return match, who


def plan_join(match: ThreadMatch, lookup: Lookup, at: datetime, history: bool,
              window: timedelta) -> tuple[Join | None, ThreadMatch, dict[int, TicketFacts]]:
    """Which tickets of the conversation join the one the message goes on (see ingest.join_threads).

    A ticket closed longer ago than the reopen window is finished: live mail
    leaves it alone, and joins only the conversation's other tickets.
    Returns the join (None: nothing to merge), the match it leaves, and the
    tickets' facts as read.
    """
    if not match.also:
        return None, match, {}
    links = match.links()
    rows = lookup.tickets_to_join(list(links))
    joinable = [pk for pk in sorted(rows)
                if history or not (rows[pk].status == "closed" and not within(rows[pk].closed_at, at, window))]
    if not joinable:
        # Every part is finished: the message follows up on the oldest.
        return None, ThreadMatch(match.ticket_pk, match.reason), rows
    survivor, others = joinable[0], joinable[1:]
    match = ThreadMatch(survivor, links[survivor], tuple(others), tuple(links[pk] for pk in others))
    if not others:
        return None, match, rows
    parts = [rows[survivor], *(rows[pk] for pk in others)]
    return Join(rows[survivor], tuple(rows[pk] for pk in others), tuple(links[pk] for pk in others),
                joined_state(parts)), match, rows


def joined_state(parts: Sequence[TicketFacts]) -> JoinedState:
    """The state of joined tickets, the survivor first: the most active status
    (`threads.joined_status`), the highest priority and tier, the survivor's
    assignee/team/SLA policy or else a merged ticket's, the earliest creation
    and first response, and live if any part is live."""
    status = joined_status([p.status for p in parts])
    source = next((p for p in parts if p.status == status), None)
    return JoinedState(
        status=status, closed_at=source.closed_at if source else None, solved_at=source.solved_at if source else None,
        priority=max((p.priority for p in parts), key=lambda v: PRIORITIES.index(v) if v in PRIORITIES else -1),
        assignee=next((p.assignee for p in parts if p.assignee), None),
        team=next((p.team for p in parts if p.team), None), tier=max(p.tier for p in parts),
        escalated=max(p.escalated for p in parts),
        sla_policy=next((p.sla_policy for p in parts if p.sla_policy), None),
        history=min(p.history for p in parts), created_at=min(p.created_at for p in parts),
        first_response_at=min((p.first_response_at for p in parts if p.first_response_at is not None), default=None))


def _after_join(join: Join) -> TicketFacts:
    """The survivor as the join leaves it (merging also gathers the tags)."""
    tags = list(join.survivor.tags)
    for other in join.others:
        tags += [x for x in other.tags if x not in tags]
    s = join.state
    return replace(join.survivor, status=s.status, closed_at=s.closed_at, solved_at=s.solved_at, priority=s.priority,
                   assignee=s.assignee, team=s.team, tier=s.tier, escalated=s.escalated, sla_policy=s.sla_policy,
                   history=s.history, created_at=s.created_at, first_response_at=s.first_response_at,
                   tags=tuple(tags))


def choose_ticket(m: Incoming, who: Who, match: ThreadMatch, rows: Mapping[int, TicketFacts], join: Join | None,
                  lookup: Lookup, desk: Desk) -> tuple[TicketChoice, TicketFacts | None]:
    """The ticket the message goes on and its status change (a follow-up
    ticket for a customer writing on one closed longer than reopen_window),
    and the existing ticket's facts once the join and the message are
    applied (None when the message opens a ticket and touches no other)."""
    msg, settings = m.msg, desk.settings
    sender = msg.from_ or (msg.reply_to[0] if msg.reply_to else None)
    if sender is None and who.kind != "bounce":
        raise Quarantined("no sender address")
    follows = touched = None
    if not match.is_new:
        facts = _after_join(join) if join is not None else rows.get(match.ticket_pk) or lookup.ticket(match.ticket_pk)
        if m.history:
            # History joins its thread as a record and changes nothing.
            return TicketChoice(facts.pk, facts.ref, match.reason, facts.status, facts.status), facts
        if not (who.kind == "customer" and facts.status == "closed"
                and not within(facts.closed_at, m.at, settings.tickets.reopen_window)):
            status = next_status(facts.status, who.kind)
            return (TicketChoice(facts.pk, facts.ref, match.reason, facts.status, status),
                    replace(facts, status=status))
        # Too old to reopen: a new ticket that points back at the old one.
        follows = touched = facts
    status, closed_at = "new", None
    if m.history:
        status = "closed" if settings.mailbox(m.mailbox).history == "closed" else "open"
        closed_at = m.at if status == "closed" else None
    reason = match.reason if follows is None else f"follow-up to closed {follows.ref} ({match.reason})"
    return TicketChoice(
        None, "", reason, None, status, closed_at=closed_at, follows=follows,
        follows_reason=match.reason if follows is not None else "",
        subject=desk.tags.display_subject(msg.subject)[:998], requester=sender.email if sender else "mailer-daemon",
        requester_name=sender.name if sender else None), touched


def confirm_solved(m: Incoming, who: Who, ticket: TicketChoice, text: str,
                   desk: Desk) -> confirm.Confirmation | None:
    """待确认: whether a customer's live reply to a solved ticket confirms it
    (close) or not (reopen, as `next_status` says); None for any other mail.

    With the mailbox's confirm_closes off, every such reply reopens, and the
    decision says so.
    """
    if who.kind != "customer" or m.history or ticket.is_new or ticket.status_before != "solved":
        return None
    mailbox = desk.settings.mailbox(m.mailbox)
    if not mailbox.confirm_closes:
        return confirm.Confirmation(False, reason=f"confirm_closes is off for mailbox {mailbox.name}")
    attachments = sum(1 for a in m.msg.attachments if not a.inline)
    return confirm.decide(text, desk.policies.confirm, attachments=attachments)


def next_status(status: str, kind: str) -> str:
    """The status a ticket moves to when a message of this kind arrives."""
    if kind == "customer" and status in ("pending", "solved", "closed"):
        return "open"
    if kind == "agent" and status in ("new", "open"):
        return "pending"
    return status


def within(closed_at: datetime | None, now: datetime, window: timedelta) -> bool:
    return closed_at is None or now - closed_at <= window


# -- routing ---------------------------------------------------------------------------------


def route(m: Incoming, ticket: TicketChoice, current: TicketFacts | None, touched: TicketFacts | None,
          join: Join | None, lookup: Lookup, desk: Desk) -> Routing:
    """The admin's [[rules]], in order, on a new ticket and on each customer message.

    `current` is the ticket the message is on as it will be (None: a new
    one); `touched` an existing ticket the message changes (see choose_ticket).
    """
    settings = desk.settings
    mailbox = settings.mailbox(m.mailbox)
    team_on_new = mailbox.team if ticket.is_new and mailbox.team else None
    rules = desk.policies.rules
    # History is not routed: assigning years of closed mail would skew every
    # agent's load and every round-robin.
    if not rules.rules or m.history:
        return Routing(team_on_new=team_on_new)
    if ticket.is_new:
        tags, priority, team, tier = [], "normal", team_on_new, 1
    else:
        tags, priority, team, tier = list(current.tags), current.priority, current.team, current.tier
    facts = facts_for(m.msg, event="new" if ticket.is_new else "message", mailbox=m.mailbox,
                      headers=headers(m.raw), tags=list(tags), priority=priority, team=team)
    decisions = rules.evaluate(facts)
    if not decisions:
        return Routing(team_on_new=team_on_new)
    outcome = merge(decisions)
    tags += [x for x in outcome.tags if x not in tags]
    team = outcome.team or team
    tier_before = tier
    tier = outcome.tier if outcome.tier is not None else (tier + 1 if outcome.escalate else tier)
    assignee = None
    escalation = None
    if not outcome.assign and (outcome.escalate or tier > tier_before):
        counts = _counts_after(lookup.open_counts(OPEN_STATUSES), ticket, touched, join)
        escalation = tiers.decide(tier=tier, team=team, assignee=current.assignee if current else None,
                                  agents=tiers.agents_of(settings.agents), open_counts=counts,
                                  mode=desk.policies.scheduler.escalation_assign, keep=True)
        assignee = escalation.assignee
    elif outcome.assign in ASSIGN_STRATEGIES:
        members = rules.teams.get(team or "", ()) or tuple(a.name for a in settings.agents if team in a.teams)
        counts = _counts_after(lookup.open_counts(OPEN_STATUSES), ticket, touched, join)
        last = lookup.last_rule_assignee(team)
        assignee = pick_assignee(outcome.assign, members, open_counts=counts, last_assigned=last)
    elif outcome.assign:
        assignee = outcome.assign
    if escalation is None and (outcome.escalate or tier > tier_before):
        # The escalating rule named the assignee (or a strategy): still an escalation.
        escalation = tiers.Routed(assignee, (), tiers.RULE_ASSIGNED)
    return Routing(team_on_new=team_on_new, matched=True, priority=outcome.priority, tags=tuple(tags), team=team,
                   tier=tier, escalate=bool(outcome.escalate), assignee=assignee, sla=outcome.sla,
                   reasons=outcome.reasons, ack_template=_ack_template(outcome), escalation=escalation)


def _ack_template(outcome: Outcome) -> str | bool | None:
    return outcome.autoreply if outcome.autoreply is not None and outcome.autoreply is not True else None


def _counts_after(counts: dict[str, int], ticket: TicketChoice, touched: TicketFacts | None,
                  join: Join | None) -> dict[str, int]:
    """The open tickets per assignee once this message's join and status change
    are applied (the store's counts are read before them)."""
    if touched is None or (join is None and ticket.is_new):
        # Nothing moves (a follow-up leaves the closed ticket as it is).
        return counts
    before = [join.survivor, *join.others] if join is not None else [replace(touched, status=ticket.status_before)]
    # Merged tickets are closed.
    after = [touched, *(replace(o, status="closed") for o in join.others)] if join is not None else [touched]
    counts = dict(counts)
    for sign, facts in [(-1, f) for f in before] + [(1, f) for f in after]:
        if facts.assignee and facts.status in OPEN_STATUSES:
            counts[facts.assignee] = counts.get(facts.assignee, 0) + sign
    return counts


def headers(raw: bytes) -> dict[str, str]:
    """The mail's headers, lower-case names: rules may look at any header."""
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header_block(raw))
    return {k.lower(): str(v) for k, v in head.items()}


# -- acknowledgement, survey answers, bounces, notifications -------------------------------


def acknowledge(m: Incoming, kind: str, ticket: TicketChoice, routing: Routing | None, lookup: Lookup,
                desk: Desk, now: datetime) -> Ack | None:
    """Whether a new ticket from a customer gets an acknowledgement, and which
    rule decided; None when none is due at all (not a new customer ticket,
    acknowledgements off, history)."""
    settings = desk.settings
    mailbox = settings.mailbox(m.mailbox)
    if not (ticket.is_new and kind == "customer" and mailbox.ack and settings.autoreply.enabled) or m.history:
        return None
    template = routing.ack_template if routing is not None else None
    if template is False:
        return Ack(False, rule="routing", reason="a routing rule suppressed the acknowledgement")
    verdict = may_auto_reply(m.msg, ack_context(desk, lookup, m.mailbox, ticket.requester, now))
    if not verdict.allowed:
        return Ack(False, rule=verdict.rule, reason=verdict.reason)
    return Ack(True, template=template if isinstance(template, str) else "ack")


def ack_context(desk: Desk, lookup: Lookup, mailbox_name: str, requester: str, now: datetime) -> AckContext:
    """What the auto-reply rules need to know about the store: the budget's counts and a bounce mark."""
    autoreply = desk.settings.autoreply
    mailbox = desk.settings.mailbox(mailbox_name)
    _key, domain = budget_key(requester)
    # A shared provider's domain (gmail.com) is millions of people: no per-domain ceiling.
    shared = domain in autoreply.shared_domains
    counts = lookup.ack_counts(requester, now, count_domain=not shared)
    bounced = lookup.bouncing_since(requester, now, autoreply.bounce_expiry)
    return AckContext(
        own_addresses=desk.own_addresses,
        own_domains_for_ids=desk.own_domains,
        loop_header_value=loop_header_value(mailbox.address),
        sent_last_hour=counts.address_hour,
        sent_last_day=counts.address_day,
        budget_per_hour=autoreply.per_hour,
        budget_per_day=autoreply.per_day,
        sender_bouncing=bounced is not None,
        domain=domain,
        sent_domain_last_minute=counts.domain_minute,
        sent_domain_last_hour=counts.domain_hour,
        budget_domain_per_minute=None if shared else autoreply.per_domain_per_minute,
        budget_domain_per_hour=None if shared else autoreply.per_domain_per_hour,
    )


def survey_answer(answer: tuple[int, int | None, str], history: bool, language: str, desk: Desk, *,
                  assignee: str | None = None) -> SurveyAnswer:
    """A survey answer with its label; a low one is followed up by the supervisors and admins (not for history).

    A reply without a rating is a comment: the ticket's assignee is told of
    it (the supervisors and admins when nobody is assigned), unless it is
    empty or history.
    """
    csat_id, rating, comment = answer
    scale = desk.policies.csat
    supervisors = tuple(a.name for a in desk.settings.agents
                        if a.role in ("supervisor", "admin") and a.notify != "none")
    if rating is None:
        followup: tuple[str, ...] = ()
        if comment and not history:
            agent = desk.settings.agent(assignee) if assignee else None
            followup = (agent.name,) if agent is not None and agent.notify != "none" else supervisors
        return SurveyAnswer(csat_id, None, comment, "", False, followup)
    low = is_low(scale, rating)
    return SurveyAnswer(csat_id, rating, comment, csat_label(scale.scale, rating, language), low,
                        supervisors if low and not history else ())


def bounce_marks(bounce: Bounce, lookup: Lookup, now: datetime, expiry: timedelta) -> BounceMarks:
    """The addresses a bounce marks as bouncing (see ingest.note_bounce).

    Only a report about a Message-ID we sent marks anybody, and only the
    addresses that mail went to, so a forged report cannot silence a customer.
    """
    if not bounce.permanent:
        return BounceMarks()
    mid = bounce.original_message_id
    if not mid:
        return BounceMarks(not_marked="the report names no Message-ID of ours")
    sent = lookup.sent_to(mid)
    if sent is None:
        return BounceMarks(not_marked=f"we sent no mail <{mid}>")
    marked = tuple(sorted(set(bounce.recipients) & set(sent)))
    if not marked:
        return BounceMarks(not_marked=f"none of the failed addresses is one <{mid}> went to")
    return BounceMarks(marked, now + expiry)


def watchers(mailbox: str, ticket: TicketChoice, current: TicketFacts | None, routing: Routing | None,
             settings: Settings) -> tuple[str, ...]:
    """The agents told of a customer's mail: the assignee (notify "assigned" or
    "all"), and while nobody is assigned, the agents of the ticket's team or
    mailbox who asked for "all"."""
    assignee = current.assignee if current is not None else None
    team = current.team if current is not None else (routing.team_on_new if routing else None)
    if routing is not None and routing.matched:
        team = routing.team
        assignee = routing.assignee or assignee
    names = []
    for agent in settings.agents:
        if agent.notify == "none":
            continue
        mine = agent.name == assignee
        watching = agent.notify == "all" and assignee is None and (team in agent.teams or mailbox in agent.teams)
        if mine or watching:
            names.append(agent.name)
    return tuple(names)


__all__ = ["Ack", "BounceMarks", "Desk", "Disposition", "Done", "Incoming", "Join", "JoinedState", "Lookup",
           "Quarantined", "Relay", "Routing", "SurveyAnswer", "TicketChoice", "decide"]
