"""Time the routing rules: ten rules of every kind of condition on one message.

    .venv/bin/python bench/routing.py [RUNS]

Prints the best of five rounds of RUNS evaluations (default 2000), in
microseconds per evaluation.  The aim is under 50 µs on the 2-core machine
of the README; tests/test_routing.py checks only what the rules decide.
"""

from __future__ import annotations

import sys
import timeit

from inboxd.desk.routing import Facts, parse_rules

TEN_RULES = [
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
]
GROUPS = [{"name": "vip", "members": ["ceo@bigcorp.example", "@vip.example"]}]
TEAMS = [{"name": "billing", "agents": ["bob", "erin"]}]
MESSAGE = Facts(
    event="new", mailbox="support", sender="lilei@vip.example", subject="Refund for order 42",
    body="Hello,\n\nmy invoice is wrong. " + "Some more text about the problem. " * 60,
    headers={"x-priority": "1 (Highest)"}, attachment_types=("application/pdf",), tags=frozenset({"billing"}),
    priority="normal", team=None,
)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    ruleset = parse_rules(TEN_RULES, GROUPS, TEAMS, file_name="bench", agents={"alice", "bob", "erin"},
                          sla_names={"standard", "vip"}, mailboxes={"support", "billing"})
    matched = len(ruleset.evaluate(MESSAGE))
    best = min(timeit.repeat(lambda: ruleset.evaluate(MESSAGE), number=runs, repeat=5)) / runs
    print(f"10 rules ({matched} match) on a {len(MESSAGE.body)}-character message: "
          f"{best * 1e6:.1f} µs per evaluation (best of 5 x {runs})")


if __name__ == "__main__":
    main()
