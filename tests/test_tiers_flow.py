"""Tiers end to end: every escalation trigger routes, notifies, tells the customer and counts.

Real Dovecot in, real aiosmtpd out, both stores (write_config).  Time is
injected: cycles run at given instants (`run_once(now=...)`) and the agents'
changes go through `inboxd.desk.workflow.Workflow` with `now=`, so "25
hours later" is an argument and nothing waits for the clock.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest

from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.desk.workflow import Workflow
from inboxd.reports.metrics import compute_report
from inboxd.store.engine import reading
from inboxd.testing.mail import make_mail
from tests.support import list_json, show_json, store_engine, write_config

DESK = """
[[agents]]
name = "tina"
email = "tina@example.com"
teams = ["desk"]
tier = 1

[[agents]]
name = "bob"
email = "bob@example.com"
teams = ["desk"]
tier = 2

[[agents]]
name = "dan"
email = "dan@example.com"
teams = ["desk"]
tier = 2

[[agents]]
name = "erin"
email = "erin@example.com"
teams = ["other"]
tier = 2

[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"
teams = ["desk"]

[[teams]]
name = "desk"
agents = ["tina", "bob", "dan"]

[[teams]]
name = "other"
agents = ["erin"]

[[sla]]
name = "std"
first_response = "2h"
tier2_response = "24h"
priority = ["low", "normal", "high", "urgent"]

[[rules]]
name = "desk"
if = { mailbox = ["support"] }
then = { team = "desk" }

[[rules]]
name = "database"
if = { subject = ["database"] }
then = { tier = 2 }

[[rules]]
name = "vip"
if = { from_domain = ["vip.example"] }
then = { tier = 2, assign = "dan" }

[[rules]]
name = "crash"
on = ["tag"]
if = { tags_any = ["system_crash"] }
then = { tier = 2, escalate = true }

[scheduler]
unassigned_after = "30d"
unassigned_after_urgent = "30d"
digest_time = "23:59"
"""

# A fixed Monday morning, far from midnight so no daily digest interferes.
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def desk(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          smtp_port=smtp_sink.port, extra=DESK)
    return config, imap_user


def once(config, now: datetime) -> None:
    report = run_once(load_settings(config), workers=0, now=now)
    assert report.failed == [], report.statuses


def as_(config, agent: str) -> Workflow:
    settings = load_settings(config)
    return Workflow(store_engine(config), settings, settings.agent(agent))


def mails(sink, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(e.data, policy=email.policy.default) for e in sink.envelopes
            if address in e.rcpt_tos]


def body(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def events(config, ref: str, action: str) -> list[dict]:
    return [e for e in show_json(config, ref)["events"] if e["action"] == action]


def report(config, since: datetime, until: datetime) -> dict:
    settings = load_settings(config)
    engine = store_engine(config)
    try:
        with reading(engine) as conn:
            return compute_report(conn, settings, since=since, until=until, now=until, include_agents=False)
    finally:
        engine.dispose()


def test_manual_escalation_routes_and_a_missed_tier2_response_escalates_again(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Ann <ann@example.org>", subject="Printer jams"),
                   when=T0 - timedelta(minutes=5))
    dovecot.append(user, "INBOX", make_mail(frm="Ben <ben@example.org>", subject="Login fails"),
                   when=T0 - timedelta(minutes=4))
    once(config, T0)
    refs = {t["subject"]: t["id"] for t in list_json(config)}
    jams, login = refs["Printer jams"], refs["Login fails"]
    tina = as_(config, "tina")
    for ref in (jams, login):
        tina.take(ref, now=T0 + timedelta(minutes=1))
        tina.reply(ref, "We are looking into it.", now=T0 + timedelta(minutes=2))

    # bob and dan both hold nothing: the tie goes to bob (listed first).
    r = tina.escalate(jams, "tier2", "needs the printer firmware team", now=T0 + timedelta(minutes=10))
    assert r["to"] == "tier2" and r["trigger"] == "manual"
    assert r["changes"]["assignee"] == {"before": "tina", "after": "bob"}
    assert r["tier_response_due"] == "2026-12-01T09:10:00Z"        # 24 hours of the 24x7 policy
    # Now bob holds one: dan, with none, is the least loaded.
    r = tina.escalate(login, "tier2", "single sign-on bug", now=T0 + timedelta(minutes=11))
    assert r["changes"]["assignee"] == {"before": "tina", "after": "dan"}
    assert r["routed"] == "least-loaded tier 2 of team desk agent (0 open tickets)"
    once(config, T0 + timedelta(minutes=12))
    [to_bob] = mails(smtp_sink, "bob@example.com")
    assert jams in to_bob["Subject"]
    assert body(to_bob).startswith(f"{jams} was escalated to tier 2 and assigned to you: needs the printer firmware")
    [to_dan] = mails(smtp_sink, "dan@example.com")
    assert login in to_dan["Subject"]
    assert mails(smtp_sink, "erin@example.com") == []             # another team's tier 2
    assert mails(smtp_sink, "tina@example.com") == []             # she escalated it herself
    # Each customer is told once (escalation_update is on by default).
    for customer, ref in (("ann@example.org", jams), ("ben@example.org", login)):
        updates = [m for m in mails(smtp_sink, customer) if m["Auto-Submitted"]]
        assert len(updates) == 1 and ref in updates[0]["Subject"]
    assert sorted(t["id"] for t in list_json(config, "--tier", "2")) == sorted([jams, login])
    assert list_json(config, "--tier", "1") == []

    # dan answers within his 24 hours; bob does not.
    as_(config, "dan").reply(login, "Fixed on our side.", now=T0 + timedelta(hours=5))
    once(config, T0 + timedelta(hours=24, minutes=9))              # a minute before bob's due time
    assert len(events(config, jams, "escalate")) == 1
    once(config, T0 + timedelta(hours=24, minutes=11))
    again = events(config, jams, "escalate")
    assert len(again) == 2
    detail = again[1]["detail"]
    assert (detail["to"], detail["trigger"]) == ("supervisor", "sla")
    assert detail["reason"] == "tier 2 response SLA breached"
    assert detail["due"] == "2026-12-01 09:10 UTC"
    assert len(events(config, login, "escalate")) == 1             # dan's reply met the promise
    carol = [m for m in mails(smtp_sink, "carol@example.com") if "escalated to the supervisors" in body(m)]
    assert len(carol) == 1 and jams in carol[0]["Subject"]
    breach = [m for m in mails(smtp_sink, "bob@example.com") if "SLA breach" in body(m)]
    assert len(breach) == 1
    shown = show_json(config, jams)
    # The supervisors review it; bob keeps it meanwhile (a broken promise never takes work away).
    assert (shown["tier"], shown["escalated"], shown["assignee"]) == (3, True, "bob")
    # A later cycle does nothing twice.
    once(config, T0 + timedelta(hours=30))
    assert len(events(config, jams, "escalate")) == 2

    r = report(config, T0 - timedelta(days=1), T0 + timedelta(days=2))["escalations"]
    assert r["count"] == 3
    assert r["by_trigger"] == {"manual": 2, "sla": 1, "tag": 0, "rule": 0}
    assert r["by_target"] == {"tier2": 2, "supervisor": 1}


def test_rule_and_tag_escalations_are_routed_and_reported(desk, dovecot, smtp_sink):
    config, user = desk
    dovecot.append(user, "INBOX", make_mail(frm="Cy <cy@example.org>", subject="The database is down"),
                   when=T0 - timedelta(minutes=3))
    dovecot.append(user, "INBOX", make_mail(frm="Di <di@example.org>", subject="App closes at start"),
                   when=T0 - timedelta(minutes=2))
    once(config, T0)
    refs = {t["subject"]: t["id"] for t in list_json(config)}
    db, app = refs["The database is down"], refs["App closes at start"]

    # The database rule puts the new ticket at tier 2, with bob (the tie's first).
    t = show_json(config, db)
    assert (t["tier"], t["assignee"], t["team"]) == (2, "bob", "desk")
    [rule] = events(config, db, "escalate")
    assert (rule["detail"]["to"], rule["detail"]["trigger"]) == ("tier2", "rule")
    assert rule["detail"]["reason"].startswith("rule desk:") and "rule database:" in rule["detail"]["reason"]
    # The rule escalated the ticket when its mail arrived, three minutes before T0.
    assert rule["detail"]["tier_response_due"] == "2026-12-01T08:57:00Z"

    # Tagging system_crash escalates through the crash rule: dan, with no load, takes it.
    tina = as_(config, "tina")
    tina.take(app, now=T0 + timedelta(minutes=1))
    tina.tag(app, ["system_crash"], now=T0 + timedelta(minutes=2))
    t = show_json(config, app)
    assert (t["tier"], t["escalated"], t["assignee"]) == (2, True, "dan")
    [tag] = events(config, app, "escalate")
    assert (tag["detail"]["to"], tag["detail"]["trigger"], tag["detail"]["notified"]) == ("tier2", "tag", ["dan"])
    assert tag["detail"]["reason"].startswith("rule crash:")

    # A rule that names the assignee keeps its choice, and it is still an escalation.
    dovecot.append(user, "INBOX", make_mail(frm="Vi <vi@vip.example>", subject="Contract"),
                   when=T0 + timedelta(minutes=2))
    once(config, T0 + timedelta(minutes=3))
    vip = next(t for t in list_json(config) if t["subject"] == "Contract")
    assert (vip["tier"], vip["assignee"]) == (2, "dan")
    [named] = events(config, vip["id"], "escalate")
    assert (named["detail"]["trigger"], named["detail"]["routed"]) == ("rule", "assigned by the rule")
    assert [e["detail"]["assign"] for e in events(config, vip["id"], "rule-assign")] == ["dan"]
    assert [m["Subject"] for m in mails(smtp_sink, "bob@example.com") if "escalated to tier 2" in body(m)] \
        and all(db in m["Subject"] for m in mails(smtp_sink, "bob@example.com"))
    dan = [m for m in mails(smtp_sink, "dan@example.com") if "escalated to tier 2 and assigned to you" in body(m)]
    assert len(dan) == 1 and app in dan[0]["Subject"]
    # The customer of the tagged ticket hears of it; the new ticket's customer
    # does not (acknowledgements are off here, and an escalation mail is no ack).
    assert len(mails(smtp_sink, "di@example.org")) == 1
    assert mails(smtp_sink, "cy@example.org") == []

    r = report(config, T0 - timedelta(days=1), T0 + timedelta(days=1))["escalations"]
    assert r["count"] == 3
    assert r["by_trigger"] == {"manual": 0, "sla": 0, "tag": 1, "rule": 2}
    assert {x["reason"] for x in r["top_reasons"]} == {tag["detail"]["reason"], rule["detail"]["reason"],
                                                       named["detail"]["reason"]}
    assert sorted(t["id"] for t in list_json(config, "--tier", "2")) == sorted([db, app, vip["id"]])


def test_pool_mode_and_the_supervisors_review(tmp_path, dovecot, imap_user, smtp_sink):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          extra=DESK.replace("[scheduler]\n", '[scheduler]\nescalation_assign = "pool"\n'))
    dovecot.append(imap_user, "INBOX", make_mail(frm="Eve <eve@example.org>", subject="Refund twice"),
                   when=T0 - timedelta(minutes=5))
    once(config, T0)
    [t] = list_json(config)
    ref = t["id"]
    tina = as_(config, "tina")
    tina.take(ref, now=T0 + timedelta(minutes=1))
    r = tina.escalate(ref, "tier2", "payment gateway", now=T0 + timedelta(minutes=2))
    assert r["changes"]["assignee"] == {"before": "tina", "after": None}
    assert (r["routed"], r["notified"]) == ("waits in the tier 2 of team desk pool", ["bob", "dan"])
    once(config, T0 + timedelta(minutes=3))
    for agent in ("bob", "dan"):
        [mail] = mails(smtp_sink, f"{agent}@example.com")
        assert body(mail).startswith(f"{ref} was escalated to tier 2 and waits in its pool for one of you")
    assert mails(smtp_sink, "erin@example.com") == []
    assert [x["id"] for x in list_json(config, "--tier", "2", "--unassigned")] == [ref]

    # dan picks it up; the supervisors' review is still "supervisor": unassigned, the supervisors told.
    as_(config, "dan").take(ref, now=T0 + timedelta(minutes=4))
    as_(config, "dan").reply(ref, "Checking the refund.", now=T0 + timedelta(minutes=4, seconds=30))
    r = as_(config, "dan").escalate(ref, "supervisor", "refund above my limit", now=T0 + timedelta(minutes=5))
    assert (r["to"], r["trigger"], r["notified"]) == ("supervisor", "manual", ["carol"])
    assert r["changes"]["assignee"] == {"before": "dan", "after": None}
    assert "tier_response_due" not in r
    once(config, T0 + timedelta(minutes=6))
    # (Monday morning: carol also has the weekly report.)
    [to_carol] = [m for m in mails(smtp_sink, "carol@example.com") if ref in m["Subject"]]
    assert body(to_carol).startswith(f"{ref} was escalated to the supervisors: refund above my limit.")
    # The customer heard of both escalations, in the words for an agent's escalation.
    updates = [m for m in mails(smtp_sink, "eve@example.org") if m["Auto-Submitted"]]
    assert len(updates) == 2 and all("needs a closer look" in body(m) for m in updates)
    # The supervisors' review has no tier clock: a day later nothing escalates again.
    once(config, T0 + timedelta(days=2))
    assert len(events(config, ref, "escalate")) == 2
