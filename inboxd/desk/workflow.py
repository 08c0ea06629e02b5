"""Step 8, the write side: the agent workflow shared by the CLI and the daemon.

Every change is one function that runs inside one write transaction at
the instant `now` its caller passes (the CLI passes the real time): it reads
the ticket, checks the actor's role and the status lifecycle, writes the
change with an audit event (actor, time, before and after), and queues any
mail it causes in the outbox in the same transaction.  The ticket is locked
before it is read (SQLite's BEGIN IMMEDIATE; PostgreSQL's row lock, see
`inboxd.store.tickets.ticket_by_ref`) and saved with a compare-and-swap on
its version, so two agents (or an agent and the daemon) can never overwrite
each other's change: the second one decides on the first one's result.
Refusals are `WorkflowError`s with a one-line explanation.  The SQL is in
`inboxd.store.tickets` and `inboxd.store.events`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from inboxd.desk import agentmail
from inboxd.desk.agentmail import Alert
from inboxd.desk.language import reply_from_name
from inboxd.outbound import outbox
from inboxd.outbound.compose import Outgoing, new_message_id, tagged_subject
from inboxd.config import AgentSettings, Settings
from inboxd.store import tickets as store
from inboxd.store.engine import writing
from inboxd.store.events import add_event
from inboxd.store.messages import LastMessage, last_customer_message
from inboxd.outbound.loop import AUTO_GENERATED
from inboxd.desk.threads import TicketTag
from inboxd.desk import escalation, tiers
from inboxd.desk.views import iso
from inboxd.vocabulary import PRIORITIES, STATUSES

# The lifecycle: new -> open -> pending (waiting on the customer) -> solved
# (waiting for confirmation) -> closed.  A ticket may be solved or closed
# early (spam, duplicates), and reopened from solved or closed.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending", "solved", "closed"}),
    "open": frozenset({"pending", "solved", "closed"}),
    "pending": frozenset({"open", "solved", "closed"}),
    "solved": frozenset({"open", "closed"}),
    "closed": frozenset({"open"}),
}
SUPERVISORS = ("supervisor", "admin")


class WorkflowError(Exception):
    """A refused or impossible change; str() is the one-line reason."""


class PermissionDenied(WorkflowError):
    pass


@dataclass
class Ticket:
    pk: int
    ref: str
    subject: str
    status: str
    priority: str
    mailbox: str
    requester: str
    requester_name: str
    assignee: str | None
    tags: list[str]
    team: str | None
    tier: int
    escalated: bool
    approved_by: str | None
    merged_into: int | None
    version: int


def load(conn: Connection, ref: str, *, lock: bool = False) -> Ticket:
    """The ticket `ref` (`WorkflowError` if there is none); `lock` it when about to change it."""
    row = store.ticket_by_ref(conn, ref, lock=lock)
    if row is None:
        raise WorkflowError(f"no ticket {ref}")
    values = list(row)
    values[9] = json.loads(values[9])
    values[12] = bool(values[12])
    return Ticket(*values)


class Workflow:
    """The changes an agent can make, checked against roles and the lifecycle."""

    def __init__(self, engine: Engine, settings: Settings, actor: AgentSettings, source: dict | None = None):
        self.engine = engine
        self.settings = settings
        self.actor = actor
        # How the change came and from where (inboxd.api.identity.Caller.detail): every event records it.
        self.source = dict(source or {})
        self.tags = TicketTag(settings.tickets.id_format, settings.tickets.tag_format)
        # What a change does once the ticket is saved (an escalation's
        # notifications and customer mail read the saved ticket).
        self._after: list = []

    # -- plumbing ------------------------------------------------------------------

    def _change(self, ref: str, action: str, apply, now: datetime) -> dict:
        """Run `apply(conn, ticket, now)` in one write transaction and audit it at `now`."""
        self._after = []
        with writing(self.engine) as conn:
            ticket = load(conn, ref, lock=True)
            if ticket.merged_into is not None and action not in ("note", "history"):
                into = store.ref_of(conn, ticket.merged_into)
                raise WorkflowError(f"{ref} was merged into {into}; act on {into}")
            before = _snapshot(ticket)
            detail = apply(conn, ticket, now) or {}
            after = _snapshot(ticket)
            changed = {k: {"before": before[k], "after": after[k]} for k in before if before[k] != after[k]}
            saved = store.save_work(
                conn, ticket.pk, ticket.version, status=ticket.status, priority=ticket.priority,
                assignee=ticket.assignee, tags=json.dumps(ticket.tags, ensure_ascii=False), team=ticket.team,
                tier=ticket.tier, escalated=ticket.escalated, approved_by=ticket.approved_by,
                merged_into=ticket.merged_into, now=now)
            if not saved:  # Cannot happen with the ticket locked; refuse rather than lose an update.
                raise WorkflowError(f"{ref} changed meanwhile; try again")
            event = {**detail, **({"changes": changed} if changed else {}), **self.source}
            told: set[str] = set()
            for hook in self._after:
                told.update(hook(conn, ticket, now, event))
            add_event(conn, ticket.pk, now, self.actor.name, action, event)
            _refresh_due_times(conn, self.settings, ticket.pk, now)
            if ticket.assignee and ticket.assignee != before["assignee"] and ticket.assignee not in told:
                self._notify_assignment(conn, ticket, now)
        return {"id": ticket.ref, "action": action, "actor": self.actor.name, "at": _iso(now), **event}

    def _is_supervisor(self) -> bool:
        return self.actor.role in SUPERVISORS

    def _require_supervisor(self, what: str) -> None:
        if not self._is_supervisor():
            raise PermissionDenied(f"{what} needs the supervisor or admin role ({self.actor.name} is an {self.actor.role})")

    def _require_own(self, ticket: Ticket, what: str) -> None:
        """Agents act on their own tickets and unassigned ones; supervisors on any."""
        if ticket.assignee not in (None, self.actor.name) and not self._is_supervisor():
            raise PermissionDenied(
                f"{ticket.ref} is assigned to {ticket.assignee}; {what} on a colleague's ticket needs the "
                f"supervisor or admin role")

    def _move(self, ticket: Ticket, status: str) -> None:
        if status not in STATUSES:
            raise WorkflowError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
        if status == ticket.status:
            raise WorkflowError(f"{ticket.ref} is already {status}")
        if status not in TRANSITIONS[ticket.status]:
            # In lifecycle order, which reads as the way forward.
            allowed = ", ".join(s for s in STATUSES if s in TRANSITIONS[ticket.status])
            hint = " (reopen it first)" if ticket.status in ("solved", "closed") else ""
            raise WorkflowError(f"{ticket.ref} cannot go from {ticket.status} to {status}{hint}; "
                                f"from {ticket.status} it can go to: {allowed}")
        if status == "closed" and ticket.escalated and not ticket.approved_by and not self._is_supervisor():
            raise PermissionDenied(f"{ticket.ref} was escalated: closing it needs a supervisor's review first "
                                   f"(a supervisor runs `inboxd approve {ticket.ref}`)")
        ticket.status = status

    # -- assignment ----------------------------------------------------------------

    def take(self, ref: str, *, now: datetime) -> dict:
        def apply(conn, t: Ticket, now):
            if t.assignee == self.actor.name:
                raise WorkflowError(f"{t.ref} is already yours")
            if t.assignee is not None:
                self._require_supervisor(f"taking {t.ref} from {t.assignee}")
            t.assignee = self.actor.name
            if t.status == "new":
                t.status = "open"
        return self._change(ref, "take", apply, now)

    def assign(self, ref: str, agent: str, *, now: datetime) -> dict:
        target = self.settings.agent(agent)
        if target is None:
            raise WorkflowError(f"unknown agent {agent!r}; known agents: {', '.join(a.name for a in self.settings.agents)}")

        def apply(conn, t: Ticket, now):
            if t.assignee == agent:
                raise WorkflowError(f"{t.ref} is already assigned to {agent}")
            if t.assignee is not None and t.assignee != self.actor.name:
                self._require_supervisor(f"reassigning {t.assignee}'s ticket {t.ref}")
            t.assignee = agent
            if t.status == "new":
                t.status = "open"
        return self._change(ref, "assign", apply, now)

    def unassign(self, ref: str, *, now: datetime) -> dict:
        def apply(conn, t: Ticket, now):
            if t.assignee is None:
                raise WorkflowError(f"{t.ref} is not assigned")
            self._require_own(t, "unassigning")
            t.assignee = None
        return self._change(ref, "unassign", apply, now)

    # -- status ----------------------------------------------------------------------

    def set_status(self, ref: str, status: str, *, now: datetime) -> dict:
        def apply(conn, t: Ticket, now):
            self._require_own(t, "changing the status")
            self._move(t, status)
        return self._change(ref, "status", apply, now)

    def close(self, ref: str, survey: bool = True, *, now: datetime) -> dict:
        def apply(conn, t: Ticket, now):
            self._require_own(t, "closing")
            self._move(t, "closed")
            return {"survey": survey}
        return self._change(ref, "close", apply, now)

    def reopen(self, ref: str, *, now: datetime) -> dict:
        def apply(conn, t: Ticket, now):
            self._require_own(t, "reopening")
            if t.status not in ("solved", "closed"):
                raise WorkflowError(f"{t.ref} is {t.status}, not solved or closed; nothing to reopen")
            self._move(t, "open")
            t.approved_by = None
        return self._change(ref, "reopen", apply, now)

    def approve(self, ref: str, *, now: datetime) -> dict:
        self._require_supervisor("approving an escalated ticket")

        def apply(conn, t: Ticket, now):
            if not t.escalated:
                raise WorkflowError(f"{t.ref} is not escalated; nothing to approve")
            t.approved_by = self.actor.name
        return self._change(ref, "approve", apply, now)

    # -- classification -------------------------------------------------------------

    def tag(self, ref: str, tags: Sequence[str], *, now: datetime) -> dict:
        def apply(conn, t: Ticket, now):
            self._require_own(t, "tagging")
            added = [x for x in dict.fromkeys(tags) if x not in t.tags]
            if not added:
                raise WorkflowError(f"{t.ref} already has {', '.join(tags)}")
            t.tags = t.tags + added
            reasons = self._tag_rules(conn, t, added)
            return {"rules": reasons} if reasons else {}
        return self._change(ref, "tag", apply, now)

    def _tag_rules(self, conn: Connection, t: Ticket, added: list[str]) -> list[str]:
        """Rules with on = ["tag"] see the tags just added (so they fire once per tagging)."""
        from inboxd.desk.routing import Facts, merge

        rules = self.settings.policies.rules
        if not any("tag" in r.on for r in rules.rules):
            return []
        facts = Facts(event="tag", mailbox=t.mailbox, sender=t.requester, subject=t.subject, body="", headers={},
                      attachment_types=(), tags=frozenset(added), priority=t.priority, team=t.team)
        outcome = merge(rules.evaluate(facts))
        if outcome.priority:
            t.priority = outcome.priority
        t.tags = t.tags + [x for x in outcome.tags if x not in t.tags]
        t.team = outcome.team or t.team
        tier_before = t.tier
        if outcome.tier is not None or outcome.escalate:
            t.tier = outcome.tier if outcome.tier is not None else t.tier + 1
            t.escalated = t.escalated or outcome.escalate
            if outcome.escalate:
                t.approved_by = None
        named = outcome.assign in {a.name for a in self.settings.agents}
        if named:
            t.assignee = outcome.assign
        if outcome.escalate or t.tier > tier_before:
            # A tag-triggered escalation is routed like any other (inboxd.desk.tiers),
            # unless the rule named the assignee.
            self._escalation(conn, t, t.tier, "; ".join(outcome.reasons), "tag", separate_event=True, keep=True,
                             routed=tiers.Routed(t.assignee, (), tiers.RULE_ASSIGNED) if named else None)
        return list(outcome.reasons)

    def _escalation(self, conn: Connection, t: Ticket, tier: int | None, reason: str, trigger: str, *,
                    separate_event: bool = False, keep: bool = False, routed: tiers.Routed | None = None) -> None:
        """Route the escalated ticket `t` (see inboxd.desk.escalation) and, once it
        is saved, notify and tell the customer; the event records the trigger."""
        def after(conn, saved: Ticket, now, event: dict) -> set[str]:
            detail = escalation.follow_up(conn, self.settings, saved, tier=tier, routed=routed, reason=reason,
                                          trigger=trigger, now=now, actor=self.actor.name)
            if separate_event:
                # The report counts "escalate" events; a tagging records one beside its own.
                add_event(conn, saved.pk, now, self.actor.name, "escalate",
                          {"to": tiers.target_name(tier), "reason": reason, **detail, **self.source})
            else:
                event.update(detail)
            return set(detail["notified"])

        if routed is None:
            routed = escalation.route(conn, self.settings, tier=tier, team=t.team, assignee=t.assignee, keep=keep)
        t.assignee = routed.assignee
        self._after.append(after)

    def set_field(self, ref: str, name: str, value: str | None, *, now: datetime) -> dict:
        """Give custom field `name` a value (checked against its choices), or clear it with None."""
        from inboxd.desk.fields import FieldError, check_value, field_named
        from inboxd.store import fields as store_fields

        try:
            if value is None:
                name = field_named(self.settings.policies.fields, name).name
            else:
                value = check_value(self.settings.policies.fields, name, value)
        except FieldError as exc:
            raise WorkflowError(str(exc)) from None

        def apply(conn, t: Ticket, now):
            self._require_own(t, f"setting {name}")
            if value is None:
                before = store_fields.clear_value(conn, t.pk, name)
                if before is None:
                    raise WorkflowError(f"{t.ref} has no {name} to clear")
            else:
                before = store_fields.set_value(conn, t.pk, name, value, self.actor.name, now)
                if before == value:
                    raise WorkflowError(f"{t.ref} already has {name} = {value}")
            return {"field": name, "before": before, "after": value}
        return self._change(ref, "field", apply, now)

    def untag(self, ref: str, tags: Sequence[str], *, now: datetime) -> dict:
        def apply(conn, t: Ticket, now):
            self._require_own(t, "untagging")
            missing = [x for x in tags if x not in t.tags]
            if missing:
                raise WorkflowError(f"{t.ref} has no tag {', '.join(missing)}")
            t.tags = [x for x in t.tags if x not in tags]
        return self._change(ref, "untag", apply, now)

    def priority(self, ref: str, priority: str, *, now: datetime) -> dict:
        if priority not in PRIORITIES:
            raise WorkflowError(f"unknown priority {priority!r}; use one of {', '.join(PRIORITIES)}")

        def apply(conn, t: Ticket, now):
            self._require_own(t, "changing the priority")
            if t.priority == priority:
                raise WorkflowError(f"{t.ref} is already {priority}")
            t.priority = priority
        return self._change(ref, "priority", apply, now)

    def escalate(self, ref: str, to: str, reason: str, *, now: datetime) -> dict:
        if not reason.strip():
            raise WorkflowError("an escalation needs a reason (--reason TEXT)")
        teams = {team for a in self.settings.agents for team in a.teams}
        tier = _tier(to)
        if tier is None and to not in teams and to != "supervisor":
            raise WorkflowError(f"unknown escalation target {to!r}; use a team ({', '.join(sorted(teams))}), "
                                f"tier2/tier3 or supervisor")

        def apply(conn, t: Ticket, now):
            self._require_own(t, "escalating")
            t.escalated = True
            t.approved_by = None
            if tier is not None:
                t.tier = tier
            elif to != "supervisor":
                t.team = to
            # The tier's least-loaded agent, or its pool (inboxd.desk.tiers); the
            # supervisors review it unassigned; a new team picks it up unassigned.
            team_move = tiers.Routed(None, (), f"to team {to}") if tier is None and to != "supervisor" else None
            self._escalation(conn, t, tier, reason, "manual", routed=team_move)
            if t.status in ("new", "pending"):
                t.status = "open"
            return {"to": f"tier{tier}" if tier is not None else to, "reason": reason}
        return self._change(ref, "escalate", apply, now)

    # -- writing ---------------------------------------------------------------------

    def note(self, ref: str, text: str, *, now: datetime) -> dict:
        if not text.strip():
            raise WorkflowError("a note needs text (-m TEXT)")

        def apply(conn, t: Ticket, now):
            note = Outgoing("", self.actor.email, (), text.encode())
            key = f"note:{hashlib.sha256(note.data).hexdigest()}:{now.timestamp()}"
            outbox.store_outgoing(conn, t.pk, note, kind="note", now=now, subject=t.subject, text=text,
                                  in_reply_to=None, key=key)
            return {"text": text}
        return self._change(ref, "note", apply, now)

    def reply(self, ref: str, text: str, *, now: datetime) -> dict:
        """Send `text` to the requester through the outbox; the ticket then waits on them."""
        if not text.strip():
            raise WorkflowError("a reply needs text")

        def apply(conn, t: Ticket, now):
            self._require_own(t, "replying")
            return self._reply(conn, t, now, text)
        return self._change(ref, "reply", apply, now)

    def apply_macro(self, ref: str, macro, text: str, *, now: datetime) -> dict:
        """A macro's reply (already rendered) and its actions, in one transaction."""
        def apply(conn, t: Ticket, now):
            self._require_own(t, f"applying macro {macro.name}")
            detail = {"macro": macro.name}
            if text.strip():
                detail.update(self._reply(conn, t, now, text))
            if macro.priority:
                t.priority = macro.priority
            for tag in macro.tags:
                if tag not in t.tags:
                    t.tags = t.tags + [tag]
            if macro.assign:
                if t.assignee not in (None, self.actor.name, macro.assign):
                    self._require_supervisor(f"reassigning {t.assignee}'s ticket {t.ref}")
                t.assignee = macro.assign
            if macro.status and macro.status != t.status:
                self._move(t, macro.status)
            return detail
        return self._change(ref, "macro", apply, now)

    def _reply(self, conn: Connection, t: Ticket, now: datetime, text: str) -> dict:
        if t.status == "closed":
            raise WorkflowError(f"{t.ref} is closed; reopen it before replying")
        mailbox = self.settings.mailbox(t.mailbox)
        parent, references = outbox.thread_ids(conn, t.pk)
        # A person's answer, so not automatic.
        message_id = outbox.queue(
            conn, kind="reply", mailbox=mailbox, ticket_pk=t.pk, ref=t.ref, to=[(t.requester_name, t.requester)],
            subject=tagged_subject(t.subject, t.ref, self.tags), text=text, in_reply_to=parent,
            references=references, automatic=None,
            from_name=reply_from_name(self.actor.display_name, self.actor.name, mailbox.display_name,
                                      mailbox.language), now=now,
            sent_copy=self.settings.outbox.sent_copy, record_on_ticket="agent")
        store.mark_first_response(conn, t.pk, now)
        if t.status in ("new", "open"):
            t.status = "pending"
        if t.assignee is None:
            t.assignee = self.actor.name
        return {"message_id": message_id}

    def merge(self, ref: str, into: str, *, now: datetime) -> dict:
        if ref == into:
            raise WorkflowError("cannot merge a ticket into itself")
        with writing(self.engine) as conn:
            # Locked in one order (by ref), so two merges of the same pair wait rather than deadlock.
            loaded = {r: load(conn, r, lock=True) for r in sorted((ref, into))}
            src, dst = loaded[ref], loaded[into]
            for t in (src, dst):
                self._require_own(t, "merging")
                if t.merged_into is not None:
                    raise WorkflowError(f"{t.ref} was already merged")
            moved = merge_tickets(conn, src, dst, now, self.actor.name, self.source)
            # The merged ticket has no clock of its own; the one it joined has its messages now.
            _refresh_due_times(conn, self.settings, dst.pk, now)
        return {"id": src.ref, "action": "merge", "actor": self.actor.name, "at": _iso(now), "into": dst.ref,
                "messages": moved}

    # -- notifications --------------------------------------------------------------

    def _notify_assignment(self, conn: Connection, t: Ticket, now: datetime) -> None:
        agent = self.settings.agent(t.assignee)
        if agent is None or agent.notify == "none" or agent.name == self.actor.name:
            return
        notify_agent(conn, self.settings, self.tags, t.ref, agent, now,
                     headline=Alert("assigned", {"actor": self.actor.label, "ticket": {"id": t.ref}}))


def merge_tickets(conn: Connection, src: Ticket, dst: Ticket, now: datetime, actor: str,
                  detail: dict | None = None) -> int:
    """Merge `src` into `dst` in the store: its messages (with their sightings)
    move, its tags join dst's, and src is closed and points at dst; a 'merge'
    event on both, with `detail` added.  Returns how many messages moved.

    Used by an agent's `inboxd merge` and by ingest when a conversation
    that was split over tickets is joined (see ingest.join_threads).
    """
    extra = detail or {}
    tags = dst.tags + [x for x in src.tags if x not in dst.tags]
    moved = store.merge_rows(conn, src.pk, dst.pk, json.dumps(tags, ensure_ascii=False), now)
    for t, event in ((src, {"into": dst.ref}), (dst, {"from": src.ref, "messages": moved})):
        add_event(conn, t.pk, now, actor, "merge", {**event, **extra})
    return moved


def notify_agent(conn: Connection, settings: Settings, tags: TicketTag, ref: str, agent: AgentSettings,
                 now: datetime, *, headline: str | Mapping[str, str] | Alert, ticket: Ticket | None = None) -> None:
    """Queue a notification for `agent` about ticket `ref`: its state, the
    customer's newest text, and the commands to act on it.  Replying to it
    reaches the customer through the relay; "#note" makes an internal note.

    `headline` is one sentence, or the sentence by language ({"en": ..., "zh": ...}),
    or an `agentmail.Alert` rendered from the alert/ templates; the agent's
    language is chosen (zh-Hant: else zh, converted), else English.  The body
    is the notification/ template in the agent's language (inboxd.desk.agentmail).

    `ticket` is the ticket `ref` as the caller loaded it in this transaction (not read again)."""
    t = ticket if ticket is not None else load(conn, ref)
    outbox.queue(conn, **notification(settings, tags, t, agent, now, headline, last_customer_message(conn, t.pk)))


def notification(settings: Settings, tags: TicketTag, t: Ticket, agent: AgentSettings, now: datetime,
                 headline: str | Mapping[str, str] | Alert, last: LastMessage | None) -> dict:
    """The `outbox.queue` arguments of the notification to `agent` about `t` (see `notify_agent`), given the
    ticket's last customer message; the scheduler builds a batch of them from one read."""
    line = agentmail.headline_text(settings, agent, headline)
    assignee = settings.agent(t.assignee) if t.assignee else None
    text = agentmail.notification_text(
        settings, agent, headline=line,
        ticket={"id": t.ref, "subject": t.subject, "status": t.status, "priority": t.priority,
                "assignee": assignee.label if assignee else t.assignee},
        customer={"name": t.requester_name, "email": t.requester},
        latest="\n".join(last.reply_text.splitlines()) if last else None)
    return to_agent(settings, tags, t, agent, t.subject, text, now)


def queue_to_agent(conn: Connection, settings: Settings, tags: TicketTag, t: Ticket, agent: AgentSettings,
                   subject: str, text: str, now: datetime) -> None:
    """Queue the desk's mail to one agent about ticket `t` (a notification, a reply about commands by mail)."""
    outbox.queue(conn, **to_agent(settings, tags, t, agent, subject, text, now))


def to_agent(settings: Settings, tags: TicketTag, t: Ticket, agent: AgentSettings, subject: str, text: str,
             now: datetime) -> dict:
    """The `outbox.queue` arguments of the desk's mail to one agent about ticket `t`: automatic, from the
    ticket's mailbox as "<name> (inboxd)", never copied to the Sent folder."""
    mailbox = settings.mailbox(t.mailbox)
    # One thread per ticket in the agent's client: every notification refers
    # to the same per-ticket root id.
    root = new_message_id(t.ref, mailbox.domain, unique="notify")
    return dict(kind="notification", mailbox=mailbox, ticket_pk=t.pk, ref=t.ref, to=[(agent.label, agent.email)],
                subject=tagged_subject(subject, t.ref, tags, reply=False), text=text, in_reply_to=root,
                references=[root], automatic=AUTO_GENERATED, from_name=f"{mailbox.display_name} (inboxd)",
                reply_to=mailbox.address, now=now, sent_copy=False)


def _refresh_due_times(conn: Connection, settings: Settings, ticket_pk: int, now: datetime) -> None:
    """Keep the ticket's SLA due times in step with the change just saved, in its transaction (the
    scheduler's pass then finds nothing stale to compute; it still would, should this be skipped)."""
    # Imported here: the SLA clock reads the desk's policies, which load after this module.
    from inboxd.desk.slaclock import refresh

    try:
        # A savepoint: a ticket whose due times cannot be computed never stops the agent's change.
        with conn.begin_nested():
            refresh(conn, ticket_pk, settings, settings.policies, now)
    except Exception:
        logging.getLogger("inboxd.desk.workflow").exception(
            "ticket %d: cannot compute its SLA due times; the scheduler tries again", ticket_pk)


def _tier(target: str) -> int | None:
    lowered = target.lower().replace(" ", "")
    for prefix in ("tier", "t", "l"):
        if lowered.startswith(prefix) and lowered[len(prefix):].isdigit():
            return int(lowered[len(prefix):])
    return None


def _snapshot(t: Ticket) -> dict:
    return {"status": t.status, "priority": t.priority, "assignee": t.assignee, "tags": list(t.tags),
            "team": t.team, "tier": t.tier, "escalated": t.escalated, "approved_by": t.approved_by}


def _iso(dt: datetime) -> str:
    return iso(dt)
