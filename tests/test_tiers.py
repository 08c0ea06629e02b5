"""The tier routing decision (inboxd.desk.tiers), as a table checked by hand.

Pure: agents, loads and the ticket's team in, the assignee and who is told
out.  No store, no server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inboxd.config import ConfigError
from inboxd.desk import tiers
from inboxd.desk.sla import parse_sla_policies
from inboxd.desk.tiers import Agent, decide, next_step

AGENTS = (
    Agent("tina", 1, ("desk",)),
    Agent("bob", 2, ("desk",)),
    Agent("dan", 2, ("desk", "apps")),
    Agent("erin", 2, ("other",)),
    Agent("quiet", 2, ("desk",), notify="none"),
    Agent("tom", 3, ("apps",)),
    Agent("carol", None, ("desk",), role="supervisor"),
    Agent("sam", None, (), role="admin"),
)

# (case, tier, team, current assignee, open counts, mode) -> (assignee, told)
TABLE = [
    ("least-loaded of the team wins", 2, "desk", "tina", {"bob": 3, "dan": 1, "quiet": 2}, "least-loaded",
     ("dan", ("dan",))),
    ("a tie goes to the agent listed first", 2, "desk", "tina", {"bob": 1, "dan": 1, "quiet": 1}, "least-loaded",
     ("bob", ("bob",))),
    ("no load at all is a tie of zeros", 2, "desk", None, {}, "least-loaded", ("bob", ("bob",))),
    ("an agent without notifications can still be assigned", 2, "desk", None, {"bob": 2, "dan": 2},
     "least-loaded", ("quiet", ("quiet",))),
    ("another team's tier-2 agent is never chosen, however idle", 2, "desk", None,
     {"bob": 9, "dan": 9, "quiet": 9, "erin": 0}, "least-loaded", ("bob", ("bob",))),
    ("a tier-2 assignee of the team keeps the ticket", 2, "desk", "dan", {"bob": 0, "dan": 7}, "least-loaded",
     ("dan", ())),
    ("a tier-2 assignee of another team does not", 2, "desk", "erin", {}, "least-loaded", ("bob", ("bob",))),
    ("pool: unassigned, every tier-2 agent of the team told (not one who asked for none)", 2, "desk", "tina",
     {"bob": 0}, "pool", (None, ("bob", "dan"))),
    ("no tier-3 agent in the team: the pool, the team's supervisors told", 3, "desk", "bob", {}, "least-loaded",
     (None, ("carol",))),
    ("no team's supervisor: every supervisor and admin told", 3, "other", None, {}, "least-loaded",
     (None, ("carol", "sam"))),
    ("pool mode with nobody at the tier: the supervisors told", 3, "desk", None, {}, "pool", (None, ("carol",))),
    ("a ticket without a team may go to any tier-2 agent", 2, None, None, {"bob": 2, "dan": 2, "quiet": 2},
     "least-loaded", ("erin", ("erin",))),
    ("tier 3 of the apps team", 3, "apps", "dan", {"tom": 5}, "least-loaded", ("tom", ("tom",))),
]


@pytest.mark.parametrize("case, tier, team, assignee, counts, mode, expected", TABLE, ids=[r[0] for r in TABLE])
def test_routing_table(case, tier, team, assignee, counts, mode, expected):
    routed = decide(tier=tier, team=team, assignee=assignee, agents=AGENTS, open_counts=counts, mode=mode)
    assert (routed.assignee, routed.notify) == expected
    assert routed.reason


@pytest.mark.parametrize("assignee, expected", [
    ("tina", ("tina", ())),              # an automatic escalation leaves her ticket with her (she was told)
    (None, (None, ("carol",))),          # nobody holds it: the supervisors are told
])
def test_an_automatic_escalation_to_an_unstaffed_tier_keeps_the_assignee(assignee, expected):
    routed = decide(tier=3, team="desk", assignee=assignee, agents=AGENTS, open_counts={}, keep=True)
    assert (routed.assignee, routed.notify) == expected
    # Staffed tiers route the same with or without `keep`.
    assert decide(tier=2, team="desk", assignee="tina", agents=AGENTS, open_counts={}, keep=True).assignee == "bob"


def test_the_reason_says_what_was_decided():
    assert decide(tier=2, team="desk", assignee=None, agents=AGENTS, open_counts={"bob": 1, "dan": 2, "quiet": 3}
                  ).reason == "least-loaded tier 2 of team desk agent (1 open ticket)"
    assert decide(tier=2, team="desk", assignee=None, agents=AGENTS, open_counts={}, mode="pool"
                  ).reason == "waits in the tier 2 of team desk pool"
    assert decide(tier=3, team="desk", assignee=None, agents=AGENTS, open_counts={}).reason.startswith(
        "no tier 3 of team desk agent")


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        decide(tier=2, team=None, assignee=None, agents=AGENTS, open_counts={}, mode="random")


@pytest.mark.parametrize("tier, team, expected", [
    (1, "desk", 2),        # tier 1 always goes to tier 2 (staffed or not), as before tiers
    (0, None, 2),
    (2, "desk", None),     # desk has no tier 3: the supervisors
    (2, "apps", 3),        # apps has tom at tier 3
    (3, "apps", None),     # nobody above tier 3
])
def test_next_step_after_a_broken_promise(tier, team, expected):
    assert next_step(tier, team, AGENTS) == expected
    assert tiers.target_name(expected) == ("supervisor" if expected is None else f"tier{expected}")


def test_tier_response_limits_are_read_per_policy():
    policies = parse_sla_policies([{"name": "std", "first_response": "4h", "tier2_response": "24h",
                                    "tier3_response": "8h"}, {"name": "plain", "first_response": "1h"}],
                                  {}, "inboxd.toml")
    assert policies["std"].tier_limit(2) == timedelta(hours=24)
    assert policies["std"].tier_limit(3) == timedelta(hours=8)
    assert policies["std"].tier_limit(4) is None
    assert policies["plain"].tier_limit(2) is None
    # In the policy's calendar (24x7 UTC here): due 24 hours on.
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert policies["std"].calendar.add(start, policies["std"].tier_limit(2)) == start + timedelta(hours=24)
    with pytest.raises(ConfigError, match=r"sla\[0\]\.tier2_response"):
        parse_sla_policies([{"name": "x", "first_response": "1h", "tier2_response": "0s"}], {}, "inboxd.toml")


def test_the_duties_reasons_read_in_chinese_and_an_agents_own_reason_is_quoted_as_written() -> None:
    from inboxd.desk.escalation import reason_zh

    assert reason_zh("first response SLA breached") == "首次响应超时"
    assert reason_zh("resolution SLA breached") == "解决时限超时"
    assert reason_zh("tier 2 response SLA breached") == "2线响应超时"
    assert reason_zh("数据库疑似损坏") == "数据库疑似损坏"
    assert reason_zh("customer says the SLA breached twice") == "customer says the SLA breached twice"
