"""Who takes an escalated ticket: the tier routing decision, pure.

The practice (seed 002) is tier 1 -> tier 2 (technical support, with its own
response time) -> the supervisors' review.  Every escalation, whatever
triggered it (an agent's `inboxd escalate`, a broken SLA promise, a tag, a
routing rule), asks the same question here: given the ticket's team, the
tier it goes to and its current assignee, the agents (their tier, teams)
and how many open tickets each holds, who gets it and who is told?

- The current assignee keeps it when they are a tier-N agent of the team.
- Else, with `[scheduler] escalation_assign = "least-loaded"` (the default),
  the tier-N agent of the ticket's team with the fewest open tickets gets
  it; ties go to the agent listed first in `[[agents]]`, so the choice is
  the same on every daemon.
- With `escalation_assign = "pool"`, the ticket waits unassigned in the
  tier-N pool and every tier-N agent of the team is told.
- With no tier-N agent in the team, an automatic escalation (a broken
  promise, a tag, a rule: `keep`) leaves the ticket with its assignee, who
  was told already, at tier N; an agent's own escalation, or a ticket
  nobody holds, waits unassigned at tier N and the team's supervisors are
  told (nobody else could pick it up).

A ticket without a team may go to any tier-N agent.  Which step comes
after a broken promise is `next_step`: tier 1 goes to tier 2; from tier 2
on, to the next tier when the team has agents there, else the supervisors.
`decide` and `next_step` read nothing and write nothing; the callers
(`inboxd.desk.escalation`) apply the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ASSIGN_MODES = ("least-loaded", "pool")
# The routing reason when the escalating rule named the assignee itself.
RULE_ASSIGNED = "assigned by the rule"
SUPERVISOR_ROLES = ("supervisor", "admin")


@dataclass(frozen=True)
class Agent:
    """What the routing needs to know about one `[[agents]]` entry."""

    name: str
    tier: int | None
    teams: tuple[str, ...] = ()
    role: str = "agent"
    notify: str = "assigned"


@dataclass(frozen=True)
class Routed:
    """The decision: the new assignee (None: the tier's pool), who is told, and why."""

    assignee: str | None
    notify: tuple[str, ...]
    reason: str

    @property
    def pooled(self) -> bool:
        return self.assignee is None


def agents_of(settings_agents: Iterable) -> tuple[Agent, ...]:
    """`Agent`s from the settings' AgentSettings, in config order."""
    return tuple(Agent(a.name, a.tier, tuple(a.teams), a.role, a.notify) for a in settings_agents)


def tier_agents(agents: Sequence[Agent], tier: int, team: str | None) -> list[Agent]:
    """The agents of `tier` who work for `team` (any team when the ticket has none), in config order."""
    return [a for a in agents if a.tier == tier and (team is None or team in a.teams)]


def supervisors(agents: Sequence[Agent], team: str | None) -> list[Agent]:
    """The supervisors of `team`, else every supervisor (as the SLA duties choose them)."""
    sups = [a for a in agents if a.role in SUPERVISOR_ROLES and a.notify != "none"]
    return [a for a in sups if team and team in a.teams] or sups


def decide(*, tier: int, team: str | None, assignee: str | None, agents: Sequence[Agent],
           open_counts: Mapping[str, int], mode: str = "least-loaded", keep: bool = False) -> Routed:
    """Who takes a ticket escalated to `tier` (see the module's docstring)."""
    if mode not in ASSIGN_MODES:
        raise ValueError(f"unknown escalation_assign mode {mode!r}")
    staff = tier_agents(agents, tier, team)
    where = f"tier {tier}" + (f" of team {team}" if team else "")
    if assignee is not None and any(a.name == assignee for a in staff):
        return Routed(assignee, (), f"{assignee} is a {where} agent already")
    if not staff:
        if keep and assignee is not None:
            return Routed(assignee, (), f"no {where} agent: stays with {assignee}")
        told = tuple(a.name for a in supervisors(agents, team))
        return Routed(None, told, f"no {where} agent: waits in the pool, the supervisors are told")
    if mode == "pool":
        told = tuple(a.name for a in staff if a.notify != "none")
        return Routed(None, told, f"waits in the {where} pool")
    # min() keeps the first of equals, and `staff` is in config order.
    chosen = min(staff, key=lambda a: open_counts.get(a.name, 0))
    load = open_counts.get(chosen.name, 0)
    return Routed(chosen.name, (chosen.name,),
                  f"least-loaded {where} agent ({load} open ticket{'s' if load != 1 else ''})")


def next_step(tier: int, team: str | None, agents: Sequence[Agent]) -> int | None:
    """Where a broken promise sends a ticket now at `tier`: a tier, or None for the supervisors."""
    if tier < 2:
        return 2
    if tier_agents(agents, tier + 1, team):
        return tier + 1
    return None


def target_name(tier: int | None) -> str:
    """The escalation's target as events and reports name it: "tier2", or "supervisor"."""
    return "supervisor" if tier is None else f"tier{tier}"
