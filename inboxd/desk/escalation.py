"""One escalation path for every trigger: route the ticket, start its tier clock, tell people.

An escalation is triggered by an agent (`inboxd escalate`, trigger
"manual"), a broken SLA promise ("sla", `inboxd.desk.duties`), a tag an
agent adds ("tag", `inboxd.desk.workflow`) or a routing rule on incoming
mail ("rule", `inboxd.desk.apply`).  Each caller writes the ticket's new
tier (its own way: the workflow's compare-and-swap, the duties' claimed
update, filing's routing) and its "escalate" event; what they share is here:

- `route`: who takes it (`inboxd.desk.tiers.decide` over the agents' open
  loads, read from the store);
- `follow_up`: the tier clock (the policy's `tierN_response` from now, in its
  calendar's business time), the notifications (in each agent's language),
  and, with `[scheduler] escalation_update`, the customer's `escalation`
  mail; it returns what the event records about the routing.

Everything runs in the caller's transaction at the caller's `now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import Connection

from inboxd.config import Settings
from inboxd.desk import tiers
from inboxd.desk.threads import TicketTag
from inboxd.store import tiers as store

TRIGGERS = ("manual", "sla", "tag", "rule")


def route(conn: Connection, settings: Settings, *, tier: int | None, team: str | None,
          assignee: str | None, keep: bool = False, open_counts: Mapping[str, int] | None = None) -> tiers.Routed:
    """Who takes a ticket escalated to `tier` (None: the supervisors, who review it unassigned);
    `keep`: an automatic escalation, which leaves the ticket with its assignee when tier N has nobody.
    `open_counts`: each agent's open tickets when the caller keeps them (the scheduler, over a pass), else
    counted in the store."""
    agents = tiers.agents_of(settings.agents)
    if tier is None:
        # The supervisors review it; a broken promise leaves it with its assignee, as it always did.
        return tiers.Routed(assignee if keep else None, tuple(a.name for a in tiers.supervisors(agents, team)),
                            "to the supervisors")
    return tiers.decide(tier=tier, team=team, assignee=assignee, agents=agents, open_counts=store.open_counts(conn) if open_counts is None else open_counts,
                        mode=settings.policies.scheduler.escalation_assign, keep=keep)


def tier_due(conn: Connection, settings: Settings, ticket_pk: int, tier: int | None, now: datetime) -> datetime | None:
    """When tier `tier`'s first reply is due after an escalation at `now`, or None when no limit applies."""
    if tier is None:
        return None
    # Imported here: slaclock imports the workflow, which imports this module.
    from inboxd.desk.slaclock import choose_policy

    mailbox, priority, named, history = store.sla_inputs(conn, ticket_pk)
    if history:
        return None
    policy = choose_policy(settings.policies, settings, mailbox=mailbox, named=named, priority=priority)
    limit = policy.tier_limit(tier) if policy is not None else None
    return policy.calendar.add(now, limit) if limit is not None else None


def follow_up(conn: Connection, settings: Settings, ticket, *, tier: int | None, routed: tiers.Routed,
              reason: str, trigger: str, now: datetime, actor: str | None = None,
              told: frozenset[str] = frozenset(), tell_customer: bool = True) -> dict:
    """After the ticket's escalation is written: start its tier clock, notify
    `routed.notify` (not the `actor`, nor anyone already `told`), and mail the
    customer when `escalation_update` is on.  Returns the event's routing detail.

    `ticket` is a `workflow.Ticket` as the escalation left it."""
    from inboxd.desk.workflow import notify_agent

    if trigger not in TRIGGERS:
        raise ValueError(f"unknown escalation trigger {trigger!r}")
    due = tier_due(conn, settings, ticket.pk, tier, now)
    store.set_tier_clock(conn, ticket.pk, escalated_at=now, due=due)
    tags = TicketTag(settings.tickets.id_format, settings.tickets.tag_format)
    notified = []
    for name in routed.notify:
        agent = settings.agent(name)
        if agent is None or agent.notify == "none" or name == actor or name in told:
            continue
        notify_agent(conn, settings, tags, ticket.ref, agent, now,
                     headline=headline(ticket.ref, tier, routed, reason, name))
        notified.append(name)
    if tell_customer and settings.policies.scheduler.escalation_update:
        _mail_customer(conn, settings, ticket, now, reason, trigger)
    detail = {"trigger": trigger, "routed": routed.reason, "notified": notified}
    if due is not None:
        detail["tier_response_due"] = due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return detail


# The reasons the SLA duties write, in Chinese; an agent's own reason is quoted as written.
_SLA_REASONS_ZH = {"first response": "首次响应超时", "next response": "后续响应超时", "resolution": "解决时限超时"}


def reason_zh(reason: str) -> str:
    """An SLA duty's reason ("first response SLA breached") in Chinese; any other reason as it is."""
    what, found, rest = reason.partition(" SLA breached")
    if not found or rest:
        return reason
    if what.startswith("tier ") and what.endswith(" response"):
        return f"{what.split()[1]}线响应超时"
    return _SLA_REASONS_ZH.get(what, reason)


def headline(ref: str, tier: int | None, routed: tiers.Routed, reason: str, name: str) -> dict[str, str]:
    """The notification's first sentence, in English and Chinese."""
    zh_reason = reason_zh(reason)
    if tier is None:
        return {"en": f"{ref} was escalated to the supervisors: {reason}.",
                "zh": f"工单 {ref} 已升级给主管：{zh_reason}。"}
    if routed.assignee == name:
        return {"en": f"{ref} was escalated to tier {tier} and assigned to you: {reason}.",
                "zh": f"工单 {ref} 已升级到{tier}线并分配给您：{zh_reason}。"}
    if routed.notify and not routed.reason.startswith("no "):
        return {"en": f"{ref} was escalated to tier {tier} and waits in its pool for one of you: {reason}.",
                "zh": f"工单 {ref} 已升级到{tier}线，等待本线同事认领：{zh_reason}。"}
    return {"en": f"{ref} was escalated to tier {tier}, which has no agent to take it: {reason}.",
            "zh": f"工单 {ref} 已升级到{tier}线，但该线没有可接手的客服：{zh_reason}。"}


def _mail_customer(conn: Connection, settings: Settings, ticket, now: datetime, reason: str, trigger: str) -> None:
    # The duties render every customer update (templates, language, thread);
    # one renderer keeps the escalation mail the same whatever triggered it.
    from inboxd.desk.duties import Duties

    Duties(None, settings)._mail_customer(conn, ticket, now, "escalation", {"reason": reason, "trigger": trigger})
