"""Step 3, the writes: apply a message's `Disposition` through the store layer.

`inboxd.desk.decide` decided everything filing one message will do; each
step here makes one change it names (Mailman's handlers after its chains):
join the conversation's tickets, count the message on its ticket or open
one, store the message and where it was seen, mark bouncing addresses,
record a survey answer, apply the routing rules' result, refresh the SLA
clock, queue the acknowledgement, the relay and the agents' notifications.
The steps run in the order of `inboxd.desk.ingest.PIPELINE`, on the
connection of the batch's write transaction, inside the message's
savepoint.  They decide nothing.  What they read is what the writes
before them left, for the text of what they write: the SLA clock
(`slaclock.refresh` computes the due times from the ticket as the message
leaves it), the acknowledgement's first-response promise (which the clock
has just set), the ticket as a relay or notification quotes it, and the
first ticket of a reused Message-ID.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from inboxd.desk import escalation, slaclock, tiers
from inboxd.desk.agentmail import Alert
from inboxd.desk.language import CHINESE, reply_from_name
from inboxd.desk.sla import ALWAYS, human
from inboxd.desk.workflow import load as workflow_ticket
from inboxd.desk.workflow import merge_tickets, notify_agent
from inboxd.localtime import format_local
from inboxd.mail.message import InboundMessage
from inboxd.outbound import outbox
from inboxd.outbound.compose import tagged_subject
from inboxd.outbound.loop import AUTO_REPLIED
from inboxd.store import filing
from inboxd.store import tiers as tiers_store

if TYPE_CHECKING:
    from inboxd.desk.ingest import Delivery, Filer

# Filing's own logger: these lines are part of filing a batch.
log = logging.getLogger("inboxd.desk.ingest")


def join_threads(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Merge the other tickets of this message's conversation into the one it joins.

    So a conversation whose mail arrived out of order (reply before parent,
    across folders or mailboxes, after a restore) ends up on one ticket.  The
    oldest ticket survives and absorbs the others as an agent's merge would
    (`workflow.merge_tickets`: messages move with their sightings, a 'merge'
    event on both saying which mail joined them and how).  Which tickets
    join, and the survivor's joined state, were decided by
    `decide.plan_join` (a ticket closed longer ago than [tickets]
    reopen_window is left alone by live mail; history joins them all).
    """
    join = d.disposition.join
    if join is None:
        return
    survivor = join.survivor
    filing.set_joined_state(conn, survivor.pk, **{f.name: getattr(join.state, f.name) for f in fields(join.state)})
    mid = d.msg.message_id or d.key
    change = join.change
    for other, link in zip(join.others, join.links):
        moved = merge_tickets(conn, workflow_ticket(conn, other.ref), workflow_ticket(conn, survivor.ref),
                              d.at or d.now, "inboxd", {"reason": f"thread joined by <{mid}>", "link": link, **change})
        change = {}
        log.info("<%s> joined %s into %s (%s; %d messages moved)", mid, other.ref, survivor.ref, link, moved)


def open_or_update_ticket(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Count the message on its ticket and move the ticket's status, or open a new ticket."""
    disposition = d.disposition
    choice = disposition.ticket
    if not choice.is_new:
        d.ticket_pk, d.ticket_ref = choice.pk, choice.ref
        if d.history:
            # History joins its thread as a record and changes nothing.
            filing.count_history_message(conn, d.ticket_pk, d.at, agent_reply=disposition.kind == "agent")
            return
        # A customer's live mail makes a history ticket ordinary work again.
        filing.count_message(conn, d.ticket_pk, d.at, new_status=choice.status_after,
                             first_response=disposition.kind == "agent", live=disposition.kind == "customer",
                             close=choice.status_after == "closed" and choice.status_before != "closed")
        detail = {"reason": choice.reason, "mailbox": d.mailbox, "from": disposition.sender, "kind": disposition.kind}
        if choice.status_after != choice.status_before:
            detail.update(status_before=choice.status_before, status_after=choice.status_after)
        if disposition.note_reason:
            detail["note"] = disposition.note_reason
        if disposition.agent:
            detail.update(_by_mail(d, disposition.sender))
        _event(conn, d, "message", detail, actor=disposition.agent.name if disposition.agent else "inboxd")
        if disposition.confirm is not None:
            # 待确认: why the customer's reply closed the solved ticket (the phrase) or reopened it.
            _event(conn, d, "confirm", disposition.confirm.detail())
        return
    if choice.follows is not None:
        # The closed ticket says where its conversation went on.
        filing.add_event(conn, choice.follows.pk, d.at or d.now, "inboxd", "follow-up",
                         {"reason": choice.follows_reason, "note": "closed too long ago to reopen"})
    d.ticket_pk, d.ticket_ref = filer.allocate_ref(conn)
    filing.insert_ticket(conn, pk=d.ticket_pk, ref=d.ticket_ref, subject=choice.subject, status=choice.status_after,
                         mailbox=d.mailbox, requester=choice.requester, requester_name=choice.requester_name or "",
                         at=d.at, closed_at=choice.closed_at, history=d.history)
    if choice.requester_name is not None:
        row = filing.customer_row(choice.requester, choice.requester_name, d.at)
        if d.in_run and d.facts is not None:
            # Written with the run's others at its end (see ingest.BatchFacts).
            d.facts.customers.append((d.index, row))
        else:
            filing.add_customers(conn, [row])
    detail = {"reason": choice.reason, "mailbox": d.mailbox, "from": choice.requester}
    if choice.follows is not None:
        detail["follows"] = choice.follows.ref
    if d.history:
        detail["history"] = choice.status_after
    if d.opened_by:
        # A phone call or a walk-in, typed in by the agent (`inboxd new`).
        detail["via"] = "cli"
    language = d.disposition.language
    if language is not None and language.language in CHINESE:
        # Later mail on the ticket (escalation, follow-up, survey) reads the script from here.
        detail.update(language=language.language, language_reason=language.reason)
    _event(conn, d, "created", detail, actor=d.opened_by or "inboxd")


def store_message(filer: Filer, conn: Connection, d: Delivery) -> None:
    msg = d.msg
    sender = msg.from_
    new_text = d.disposition.reply_text
    values = {
        "message_key": d.key, "message_id": msg.message_id, "ticket_id": d.ticket_pk,
        "direction": d.disposition.direction, "kind": d.disposition.kind, "from_addr": sender.email if sender else "", "from_name": sender.name if sender else "",
        "to_addrs": _addresses(msg.to), "cc_addrs": _addresses(msg.cc), "reply_to": _addresses(msg.reply_to),
        "date": msg.date, "subject": msg.subject, "text": msg.text, "reply_text": new_text,
        "html_only": msg.html_only, "in_reply_to": json.dumps(list(msg.in_reply_to)),
        "references": json.dumps(list(msg.references)), "auto": json.dumps(_auto_facts(msg, d)),
        "raw_sha256": d.sha256, "size": msg.size, "created_at": d.at,
    }
    # The parser saved the attachments' content already (see inboxd.sync.worker);
    # only attachments over the size limit are kept as metadata alone.
    attachments = [{"filename": att.filename, "content_type": att.content_type, "size": att.size,
                    "sha256": att.sha256, "stored": att.size <= filer.max_attachment, "inline": att.inline}
                   for att in msg.attachments]
    parents = {*msg.in_reply_to, *msg.references} - {msg.message_id}
    d.message_pk = filing.insert_message(conn, values, parents, attachments)
    if d.facts is not None:
        # Later mail of the batch that these name asks the store who names it (see BatchFacts).
        d.facts.new_refs.update(parents)


def note_reused_id(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A mail that reused a stored Message-ID says so in its ticket's history."""
    if not d.reused_id:
        return
    _event(conn, d, "message-id-reused", {
        "message_id": d.reused_id, "stored_as": d.key, "first_ticket": filing.ticket_ref_of_message(conn, d.reused_id),
        "reason": "a different mail (other content) already has this Message-ID",
    })


def record_sighting(filer: Filer, conn: Connection, d: Delivery) -> None:
    d.sighted = True
    row = filing.sighting_row(d.message_pk, d.mailbox, d.folder, d.uidvalidity, d.uid, d.now)
    if d.in_run and d.facts is not None:
        # Written with the run's others at its end (see ingest.BatchFacts); nothing filing does reads them.
        d.facts.sightings.append((d.index, row))
    else:
        filing.insert_sightings(conn, [row])


def note_bounce(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A permanent bounce of our own mail marks the addresses it went to, so
    no auto-replies go there until [autoreply] bounce_expiry has passed.

    Which addresses, `decide.bounce_marks` decided: only a report about a
    Message-ID in our outbox marks anybody, and only the addresses that mail
    went to.  The history records what was marked, until when, or why
    nothing was.  An old bounce (history) says nothing about the address today.
    """
    bounce, marks = d.disposition.bounce, d.disposition.bounce_marks
    if bounce is None or marks is None:
        return
    detail = {"recipients": list(bounce.recipients), "permanent": bounce.permanent, "reason": bounce.reason}
    if bounce.permanent:
        detail["marked"] = list(marks.marked)
        if marks.marked:
            detail["until"] = _iso(marks.until)
        else:
            detail["not_marked"] = marks.not_marked
    _event(conn, d, "bounce", detail)
    if d.facts is not None:
        # A customer first seen in this run must exist to be marked.
        d.facts.write_rows(conn)
    filing.mark_bouncing(conn, list(marks.marked), d.now)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_csat(filer: Filer, conn: Connection, d: Delivery) -> None:
    """A survey answer is stored (never reopening the ticket); a low one is followed up.

    A reply that gives no rating is kept as a comment on the survey, and the
    assignee is told (`decide.survey_answer` chose whom).
    """
    answer = d.disposition.csat
    if answer is None:
        return
    if answer.rating is None:
        filing.record_csat_comment(conn, answer.csat_id, answer.comment, d.now)
        _event(conn, d, "csat-comment", {"comment": answer.comment})
        excerpt = " ".join(answer.comment.split())
        excerpt = excerpt if len(excerpt) <= 200 else excerpt[:199] + "…"
        for name in answer.followup:
            notify_agent(conn, filer.settings, filer.tags, d.ticket_ref, filer.settings.agent(name), d.now,
                         headline={"en": f"The customer replied to the satisfaction survey on {d.ticket_ref}"
                                         " without a rating; kept as a comment, the ticket was not reopened:"
                                         f" {excerpt}",
                                   "zh": f"客户回复了工单 {d.ticket_ref} 的满意度调查，但没有给出评分；"
                                         f"已作为评价留言保存，工单未重新打开：{excerpt}"})
        return
    filing.record_csat_answer(conn, answer.csat_id, answer.rating, answer.label, answer.comment, d.now)
    _event(conn, d, "csat", {"rating": answer.rating, "label": answer.label, "comment": answer.comment})
    if answer.low and not d.history:
        _event(conn, d, "csat-followup", {"rating": answer.rating, "label": answer.label,
                                          "task": "follow up with the customer"})
        for name in answer.followup:
            notify_agent(conn, filer.settings, filer.tags, d.ticket_ref, filer.settings.agent(name), d.now,
                         headline={"en": f"Low satisfaction rating on {d.ticket_ref}: {answer.rating} {answer.label}. "
                                         f"Please follow up. Comment: {answer.comment or '-'}",
                                   "zh": f"工单 {d.ticket_ref} 的满意度评价较低：{answer.rating} {answer.label}。"
                                         f"请跟进。客户留言：{answer.comment or '-'}"})


def route(filer: Filer, conn: Connection, d: Delivery) -> None:
    """What the admin's [[rules]] decided (`decide.route`): the mailbox's team
    on a new ticket, then tags, priority, team, tier, assignee and SLA policy."""
    routing = d.disposition.routing
    if routing is None:
        return
    if routing.team_on_new:
        filing.set_team(conn, d.ticket_pk, routing.team_on_new)
    if not routing.matched:
        return
    filing.apply_routing(conn, d.ticket_pk, priority=routing.priority, tags=list(routing.tags), team=routing.team,
                         tier=routing.tier, escalate=routing.escalate, assignee=routing.assignee,
                         sla_policy=routing.sla)
    for reason in routing.reasons:
        _event(conn, d, "rule", {"reason": reason})
    if routing.assignee and (routing.escalation is None or routing.escalation.reason == tiers.RULE_ASSIGNED):
        _event(conn, d, "rule-assign", {"assign": routing.assignee, "team": routing.team})
    if routing.escalation is not None:
        _escalate(filer, conn, d, routing)


def _escalate(filer: Filer, conn: Connection, d: Delivery, routing) -> None:
    """A rule's escalation goes the way of every escalation (inboxd.desk.escalation):
    the tier's agent or pool, the tier clock, the notifications and the customer's
    update (not on a new ticket, whose acknowledgement is the customer's news)."""
    routed = routing.escalation
    if routed.assignee is None and routed.reason != tiers.RULE_ASSIGNED:
        tiers_store.set_assignee(conn, d.ticket_pk, None)
    reason = "; ".join(routing.reasons)
    detail = escalation.follow_up(conn, filer.settings, workflow_ticket(conn, d.ticket_ref), tier=routing.tier,
                                  routed=routed, reason=reason, trigger="rule", now=d.at or d.now,
                                  tell_customer=not d.disposition.ticket.is_new)
    _event(conn, d, "escalate", {"to": tiers.target_name(routing.tier), "reason": reason, **detail})


def clock(filer: Filer, conn: Connection, d: Delivery) -> None:
    """The ticket's SLA due times, right away (the scheduler keeps them current).

    Computed after the message's writes, from the ticket as they leave it
    (`slaclock.refresh`: read the inputs, `due_times`, store).
    """
    if not d.disposition.clock:
        return
    ack = d.disposition.ack
    if d.in_run and d.facts is not None and not (ack is not None and ack.send):
        # Nothing after this step reads the due times but an acknowledgement's
        # promise, so in a run of the batch they wait for its end, and the
        # run's tickets are refreshed together (Filer.flush_clocks; a later
        # message deciding on the ticket has it refreshed first).
        d.facts.clocks[d.ticket_pk] = d.index
        return
    if d.facts is not None:
        d.facts.clocks.pop(d.ticket_pk, None)
    slaclock.refresh(conn, d.ticket_pk, filer.settings, filer.policies, d.now)


def acknowledge(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Queue the acknowledgement `decide.acknowledge` allowed, or record the rule that said no."""
    ack = d.disposition.ack
    if ack is None:
        return
    if not ack.send:
        _event(conn, d, "no-ack", {"rule": ack.rule, "reason": ack.reason})
        return
    mailbox = filer.settings.mailbox(d.mailbox)
    # The clock step has just set the first-response promise; it is read with the ticket.
    ticket, policy_name, due = outbox.load_ticket_and_promise(conn, d.ticket_pk)
    language = d.disposition.language.language if d.disposition.language else mailbox.language
    subject, text, html = outbox.ack_content(
        filer.templates, filer.tags, mailbox, ticket, sla=_promise(filer, policy_name, due, mailbox, language),
        template=ack.template, language=language)
    # Composed by the sender on its first attempt: filing stays cheap.
    message_id = outbox.queue(
        conn, kind="ack", mailbox=mailbox, ticket_pk=d.ticket_pk, ref=ticket.ref,
        to=[(ticket.requester_name, ticket.requester)], subject=subject, text=text, html=html,
        in_reply_to=d.msg.message_id, automatic=AUTO_REPLIED, now=d.now,
        sent_copy=filer.settings.outbox.sent_copy, record_on_ticket="auto", compose_at_send=True)
    _event(conn, d, "ack", {"message_id": message_id, "to": ticket.requester})
    d.acked = True


def _promise(filer: Filer, policy_name: str | None, due: datetime | None, mailbox, language: str) -> dict:
    """The first-response promise published in the acknowledgement: the ticket's SLA policy and due time."""
    policy = filer.policies.sla.get(policy_name) if policy_name else None
    if policy is None or policy.first_response is None:
        return {"first_response": None, "first_response_due": None}
    # The customer reads the due time in the mailbox's zone, the way their
    # language writes a date, with the zone named: they may live elsewhere.
    zone = filer.policies.mailbox_zone(mailbox)
    # On a calendar with closed hours the promise counts business hours: say so.
    business = policy.calendar.name != ALWAYS.name
    return {"first_response": human(policy.first_response, language, business=business),
            "first_response_due": format_local(due, zone, language, marker=True) if due else None}


def relay(filer: Filer, conn: Connection, d: Delivery) -> None:
    """An agent's answer by email goes on to the customer from the shared address."""
    decision, agent = d.disposition.relay, d.disposition.agent
    if decision is None:
        return
    if not decision.send:
        # Nothing new above the quote (a slip of the send button): relaying it
        # would mail the customer an empty answer.
        _event(conn, d, "relay-skipped", {"reason": decision.reason, **_by_mail(d, d.disposition.sender)},
               actor=agent.name)
        return
    mailbox = filer.settings.mailbox(d.mailbox)
    ticket = outbox.load_ticket(conn, d.ticket_pk)
    parent, references = outbox.thread_ids(conn, d.ticket_pk)
    # A person's answer, so not automatic; the agent's own mail is on the thread already.
    message_id = outbox.queue(
        conn, kind="relay", mailbox=mailbox, ticket_pk=d.ticket_pk, ref=ticket.ref,
        to=[(ticket.requester_name, ticket.requester)],
        subject=tagged_subject(ticket.subject, ticket.ref, filer.tags), text=d.disposition.reply_text,
        in_reply_to=parent, references=references, automatic=None,
        from_name=reply_from_name(agent.display_name, agent.name, mailbox.display_name, mailbox.language),
        now=d.now,
        sent_copy=filer.settings.outbox.sent_copy)
    _event(conn, d, "relay", {"message_id": message_id, "to": ticket.requester, **_by_mail(d, d.disposition.sender)},
           actor=agent.name)


def mail_commands(filer: Filer, conn: Connection, d: Delivery) -> None:
    """An agent's commands by mail: kept to run once the batch is committed, or the refusal told to the agent
    (inboxd.desk.agentcommands; `decide` planned which)."""
    plan, agent = d.disposition.commands, d.disposition.agent
    if plan is None or agent is None or d.ticket_pk is None:
        return
    from inboxd.desk import agentcommands
    from inboxd.store.mailcommands import pending_key

    d.commands_waiting = agentcommands.record(
        conn, filer.settings, ticket_pk=d.ticket_pk, ref=d.ticket_ref, agent=agent, plan=plan,
        key=pending_key(d.mailbox, d.folder, d.key), origin=_by_mail(d, d.disposition.sender), at=d.at or d.now,
        now=d.now)


def _by_mail(d: Delivery, sender: str) -> dict:
    """How an agent acted by mail, in the words the CLI's and the API's events use (via, origin)."""
    return {"via": "mail", "origin": f"mail from {sender} in {d.mailbox}/{d.folder}"}


def notify_agents(filer: Filer, conn: Connection, d: Delivery) -> None:
    """Tell the agents `decide.watchers` chose about customer mail: the assignee,
    or for an unassigned ticket the agents of its team who asked for "all"."""
    mailbox = filer.settings.mailbox(d.mailbox)
    for name in d.disposition.notify:
        values = {"ticket": {"id": d.ticket_ref}, "mailbox": {"name": mailbox.name,
                                                              "display_name": mailbox.display_name}}
        headline = Alert("new_ticket" if d.disposition.ticket.is_new else "customer_wrote", values)
        notify_agent(conn, filer.settings, filer.tags, d.ticket_ref, filer.settings.agent(name), d.now,
                     headline=headline)


def _event(conn: Connection, d: Delivery, action: str, detail: dict, actor: str = "inboxd") -> None:
    # Events of a message carry its arrival time, so history reads in order.
    filing.add_event(conn, d.ticket_pk, d.at or d.now, actor, action, detail)


def _addresses(addrs) -> str:
    if not addrs:
        return "[]"
    return filing.to_json([{"name": a.name, "email": a.email} for a in addrs])


def _auto_facts(msg: InboundMessage, d: Delivery) -> dict:
    a = msg.auto
    facts = {
        "auto_submitted": a.auto_submitted, "precedence": a.precedence, "list_id": a.list_id,
        "list_unsubscribe": a.list_unsubscribe, "auto_response_suppress": a.auto_response_suppress,
        "return_path": a.return_path, "delivery_status": a.delivery_status, "loop": a.loop,
    }
    bounce = d.disposition.bounce
    if bounce is not None:
        facts["bounce"] = {"recipients": list(bounce.recipients), "permanent": bounce.permanent,
                           "reason": bounce.reason}
    return {k: v for k, v in facts.items() if v not in (None, False)}
