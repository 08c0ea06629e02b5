"""The desk's promises and routing, read once with the rest of the config.

Calendars, SLA policies, routing rules with customer groups and teams, the
scheduler's timings and the satisfaction survey all live in their own
top-level sections of inboxd.toml.  ``inboxd.config.parse_settings`` calls
``read_policies`` in its one pass over the file, so a mistake here fails the
load like any other config error (one line naming the file and the key), and
``settings.policies`` holds the result, frozen: read it there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from inboxd.config import AgentSettings, ConfigError, MailboxSettings, Table
from inboxd.desk.confirm import ConfirmSettings, parse_confirm
from inboxd.desk.csat import CsatSettings, parse_csat
from inboxd.desk.fields import Field, parse_fields
from inboxd.localtime import machine_zone
from inboxd.desk.routing import RuleSet, parse_rules
from inboxd.desk.sla import ALWAYS, Calendar, SlaPolicy, parse_calendars, parse_sla_policies, policy_for_priority

SCHEDULER_KEYS = (
    "interval", "unassigned_after", "unassigned_after_urgent", "pending_reminder", "pending_followup",
    "autoclose_after", "escalation_update", "digest_time", "timezone", "weekly_report_day", "weekly_report_time",
    "escalation_assign",
)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SchedulerSettings:
    interval: timedelta = timedelta(seconds=30)
    unassigned_after: timedelta = timedelta(hours=1)
    unassigned_after_urgent: timedelta = timedelta(minutes=5)
    pending_reminder: timedelta = timedelta(hours=48)
    pending_followup: bool = False
    autoclose_after: timedelta = timedelta(days=7)
    escalation_update: bool = True
    digest_time: time = time(8, 0)
    timezone: ZoneInfo = ZoneInfo("UTC")
    weekly_report_day: str = "mon"
    weekly_report_time: time = time(8, 0)
    # An escalation to tier N assigns its least-loaded agent, or leaves the
    # ticket in the tier's pool and tells every agent of it (inboxd.desk.tiers).
    escalation_assign: str = "least-loaded"


@dataclass(frozen=True)
class Policies:
    calendars: Mapping[str, Calendar]
    sla: Mapping[str, SlaPolicy]
    rules: RuleSet
    scheduler: SchedulerSettings
    csat: CsatSettings
    confirm: ConfirmSettings
    fields: tuple[Field, ...]

    def mailbox_zone(self, mailbox: MailboxSettings) -> ZoneInfo:
        """The zone a mailbox's customers read times in: its own, else its SLA calendar's, else the machine's."""
        if mailbox.timezone is not None:
            return mailbox.timezone
        policy = self.policy_for(named=None, mailbox_sla=mailbox.sla, priority="normal")
        # The 24x7 calendar a policy without one gets says nothing about where the team is.
        if policy is not None and policy.calendar.name != ALWAYS.name:
            return policy.calendar.tz
        return machine_zone()

    def agent_zone(self, agent: AgentSettings | None) -> ZoneInfo:
        """The zone an agent reads times in: their own, else the machine's."""
        if agent is not None and agent.timezone is not None:
            return agent.timezone
        return machine_zone()

    def policy_for(self, *, named: str | None, mailbox_sla: str | None, priority: str) -> SlaPolicy | None:
        """A rule's choice, else the mailbox's, else the policy for the priority."""
        for name in (named, mailbox_sla):
            if name and name in self.sla:
                return self.sla[name]
        return policy_for_priority(self.sla, priority)


def read_policies(top: Table, *, mailboxes: tuple[MailboxSettings, ...], agents: tuple[AgentSettings, ...],
                  data_dir: Path, base: Path) -> Policies:
    """The desk's sections of the whole config file ``top``; ConfigError names the key at fault.

    ``data_dir`` is the store's data directory (the survey key's default
    home) and ``base`` the config file's directory.
    """
    file = top.file
    calendars = parse_calendars(top.get("calendars", None), file)
    sla = parse_sla_policies(top.get("sla", None), calendars, file)
    for i, mb in enumerate(mailboxes):
        if mb.sla and mb.sla not in sla:
            raise ConfigError(f"{file}: mailboxes[{i}].sla: unknown SLA policy {mb.sla!r}")
    rules = parse_rules(
        top.get("rules", None), top.get("customer_groups", None), top.get("teams", None), file_name=file,
        agents={a.name for a in agents}, sla_names=set(sla), mailboxes={m.name for m in mailboxes},
    )
    scheduler = _scheduler(top.table("scheduler", SCHEDULER_KEYS))
    csat = parse_csat(top.get("csat", None), file_name=file, data_dir=data_dir, base=base)
    confirm = parse_confirm(top.get("confirm", None), file_name=file)
    fields = parse_fields(top.get("fields", None), file_name=file)
    return Policies(MappingProxyType(calendars), MappingProxyType(sla), rules, scheduler, csat, confirm, fields)


def _scheduler(table: Table) -> SchedulerSettings:
    def clock(key: str, default: str) -> time:
        value = table.string(key, default)
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value)
        if not match:
            table.fail(key, f'expected a time of day such as "08:00", got "{value}"')
        return time(int(match[1]), int(match[2]))

    zone = table.string("timezone", "UTC")
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        table.fail("timezone", f'unknown time zone "{zone}"')
    return SchedulerSettings(
        interval=table.duration("interval", "30s"),
        unassigned_after=table.duration("unassigned_after", "1h"),
        unassigned_after_urgent=table.duration("unassigned_after_urgent", "5m"),
        pending_reminder=table.duration("pending_reminder", "48h"),
        pending_followup=table.boolean("pending_followup", False),
        autoclose_after=table.duration("autoclose_after", "7d"),
        escalation_update=table.boolean("escalation_update", True),
        digest_time=clock("digest_time", "08:00"),
        timezone=tz,
        weekly_report_day=table.choice("weekly_report_day", "mon", WEEKDAYS),
        weekly_report_time=clock("weekly_report_time", "08:00"),
        escalation_assign=table.choice("escalation_assign", "least-loaded", ("least-loaded", "pool")),
    )
