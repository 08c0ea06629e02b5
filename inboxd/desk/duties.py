"""Step 7: the scheduled duties, each done once per target and never skipped.

Time lives in columns (the ticket's due times, solved_at, closed_at); a duty
scans for rows whose time has come and handles each in its own write
transaction.  The claim is an insert into `duty` under a unique (duty, key):
the key names the ticket and the target (say, the first-response due time
being warned about), so a second daemon, a restart or a repeated pass finds
the claim already there and does nothing.  Because duties look at what is
due rather than at what happened since the last run, a daemon that was down
catches up once on what it missed, with no burst of duplicates.

Each duty is a pair: `candidates_*` lists what looks due from a read
snapshot, and `handle_one_*` claims and does one item in its own
transaction, returning whether it did it; the alerts there are thousands of
after an upgrade (unassigned, pending) are done a batch at a time instead
(`_batches`).  `run_due` runs every duty once.
APScheduler (in inboxd.daemon) only wakes this up.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine

from inboxd.outbound import outbox
from inboxd.outbound.compose import tagged_subject
from inboxd.config import AgentSettings, Settings
from inboxd.desk.csat import load_secret, make_token, survey_variables
from inboxd.desk.agentmail import Alert, DigestLine, digest_text, templates_for
from inboxd.desk.language import ticket_language
from inboxd.store import duties as store
from inboxd.store import events
from inboxd.store import filing
from inboxd.store import slaclock as clock_store
from inboxd.store import tickets as store_tickets
from inboxd.store.engine import reading, writing
from inboxd.outbound.loop import AUTO_GENERATED
from inboxd.desk.policies import Policies
from inboxd.reports.rollups import fill_nightly as roll_up_report_days
from inboxd.desk.sla import warn_time
from inboxd.desk.slaclock import parse_time, pending_since, refresh, refresh_many, settings_digest
from inboxd.desk.threads import TicketTag
from inboxd.desk import backups, escalation, oauthalert, tiers, workflow
from inboxd.store import tiers as store_tiers
from inboxd.desk.workflow import SUPERVISORS, notify_agent

log = logging.getLogger("inboxd.desk.duties")

TARGETS = store.TARGETS

# A pass's items share a write transaction up to this many, or this long (see `run_due`).
BATCH_ITEMS = 200
BATCH_SECONDS = 0.1
# Tickets whose due times one statement of each kind refreshes at once.
REFRESH_CHUNK = 500
# Solved or closed tickets with stale due times refreshed per pass (see `candidates_sla_refresh`).
BACKFILL_RESOLVED = 10_000


class Duties:
    """Every scheduled duty over one store."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.policies: Policies = settings.policies
        self.tags = TicketTag(settings.tickets.id_format, settings.tickets.tag_format)
        # Shared by every Duties over the same folders (escalation.py makes one per customer update):
        # a Templates of its own compiled each template again, a sixth of a busy pass.
        self.templates = templates_for(tuple(settings.template_dirs))
        self._open_counts: dict[str, int] | None = None

    # -- the loop ------------------------------------------------------------------

    def run_due(self, now: datetime | None = None) -> dict[str, int]:
        """Run every duty once over what is due; returns how many items each did.

        Each duty lists its candidates from a read snapshot (already-claimed
        targets are left out in SQL where the key allows), then handles each
        in its own write transaction, where the claim decides.
        """
        now = now or _utcnow()
        done: dict[str, int] = {}
        # Each agent's open tickets, counted once per pass and kept up to date by
        # the pass's own escalations (`_escalate`): counting them for every
        # breach scanned every open ticket once per breach.
        self._open_counts = None
        batched = self._batches()
        try:
            self._check_sla_settings(now)
            # The report's complete days, rolled up at night so no report counts them (inboxd.reports.rollups).
            roll_up_report_days(self.engine, self.settings, now)
            for name, candidates, handle in self.duties():
                count = 0
                try:
                    with reading(self.engine) as conn:
                        items = candidates(conn, now)
                    pending = iter(items)
                    more = bool(items)
                    while more:
                        # Items share a write transaction until BATCH_ITEMS or BATCH_SECONDS: a commit
                        # per item was a fifth of a busy pass.  Each item's claim and work are still
                        # one unit: a failure rolls the batch back, claims included, and the next
                        # pass does it again.  The time bound keeps other writers' waits short.
                        with writing(self.engine) as conn:
                            started = time.monotonic()
                            if name in batched:
                                # A batch's claims, reads and writes each in one statement (see `_batches`).
                                chunk = list(itertools.islice(pending, BATCH_ITEMS))
                                count += batched[name](conn, chunk, now) if chunk else 0
                                more = len(chunk) == BATCH_ITEMS
                                continue
                            for done_here, item in enumerate(pending, 1):
                                count += bool(handle(conn, item, now))
                                if done_here >= BATCH_ITEMS or time.monotonic() - started > BATCH_SECONDS:
                                    break
                            else:
                                more = False
                except Exception:
                    self._open_counts = None
                    # Counted for the metrics (inboxd_duties_failed_total), then raised as before.
                    # (Imported here: prometheus_client is not worth loading at every start.)
                    from inboxd.reports.prometheus import record_duty_failed

                    record_duty_failed(name)
                    raise
                done[name] = count
        finally:
            # A duty that keeps failing must not stop the backups too: they are wanted most then.
            if self.settings.backup is not None:
                done["backup"] = self.run_backup(now)
        return done

    def duties(self) -> list[tuple[str, Callable, Callable]]:
        return [
            ("sla", self.candidates_sla_refresh, self.handle_one_sla_refresh),
            ("warning", self.candidates_warning, self.handle_one_warning),
            ("breach", self.candidates_breach, self.handle_one_breach),
            ("unassigned", self.candidates_unassigned, self.handle_one_unassigned),
            ("pending", self.candidates_pending, self.handle_one_pending_reminder),
            ("autoclose", self.candidates_autoclose, self.handle_one_autoclose),
            ("survey", self.candidates_survey, self.handle_one_survey),
            ("digest", self.candidates_digest, self.handle_one_digest),
            ("weekly", self.candidates_weekly, self.handle_one_weekly_report),
            ("oauth", self.candidates_oauth, self.handle_one_oauth_alert),
        ]

    def _batches(self) -> dict[str, Callable]:
        """The duties done a batch of items at a time, by name: `handle(conn, items, now)` -> how many it did.

        An alert of these is a claim, two reads, a mail and an event: a
        statement each per alert made a first pass after an upgrade (thousands
        of alerts) a round trip to PostgreSQL seven times per alert.  A batch
        claims its items in one statement, reads what the decisions need in
        one query per kind, decides each item, then writes the mails and the
        events each in one statement; its items stay in one transaction, so a
        failure rolls back the batch, claims included, as before.
        """
        return {"unassigned": self.handle_unassigned_batch, "pending": self.handle_pending_batch}

    # -- OAuth2 sign-in -------------------------------------------------------------------

    def candidates_oauth(self, conn: Connection, now: datetime) -> list[tuple]:
        return oauthalert.candidates(conn, self.settings, now)

    def handle_one_oauth_alert(self, conn: Connection, item: tuple, now: datetime) -> bool:
        """A mailbox's token refresh failed: tell the admins once (inboxd.desk.oauthalert)."""
        return oauthalert.handle_one(conn, self.settings, item, now)

    # -- SLA ---------------------------------------------------------------------------

    def _check_sla_settings(self, now: datetime) -> None:
        """When the SLA settings changed since the last pass (a policy, a calendar, a mailbox's policy),
        make every ticket's due times stale, so this pass and the next ones compute them again.

        The digest of the settings is kept as the claim of the duty "sla-settings": the daemon that
        claims a new digest marks the tickets, once.  A store with no digest yet only records it.
        """
        digest = settings_digest(self.policies, self.settings)
        with reading(self.engine) as conn:
            if store.claimed(conn, "sla-settings", digest):
                return
        with writing(self.engine) as conn:
            if store.claim(conn, "sla-settings", digest, None, now) and store.release_others(conn, "sla-settings",
                                                                                               digest):
                count = clock_store.mark_all_stale(conn)
                log.info("the SLA settings changed: due times of %d tickets are computed again", count)

    def candidates_sla_refresh(self, conn: Connection, now: datetime) -> list[list[int]]:
        # Every unresolved ticket whose due times are stale (the other duties read them), and at most
        # BACKFILL_RESOLVED solved or closed ones, whose due times only the reports read: after an
        # upgrade or a change of policy the rest follow over the next passes, so no pass takes long.
        ids = clock_store.stale_tickets(conn, resolved_limit=BACKFILL_RESOLVED)
        return [ids[i:i + REFRESH_CHUNK] for i in range(0, len(ids), REFRESH_CHUNK)]

    def handle_one_sla_refresh(self, conn: Connection, ids: list[int], now: datetime) -> bool:
        """Recompute due times of tickets that changed since they were last computed.

        All of the chunk at once (`refresh_many`); a ticket that cannot be
        computed, or a chunk whose statements fail, is done again one ticket
        at a time, where each failure is logged and leaves that ticket alone.
        """
        try:
            with conn.begin_nested():
                failed = refresh_many(conn, ids, self.settings, self.policies, now)
        except Exception as exc:
            log.warning("SLA due times of %d tickets at once failed (%s); computing them one by one",
                        len(ids), " ".join(str(exc).split())[:200])
            failed = ids
        self._refresh_each(conn, failed, now)
        return True

    def _refresh_each(self, conn: Connection, ids: list[int], now: datetime) -> None:
        for pk in ids:
            try:
                # A savepoint, so that a statement failing on one ticket leaves
                # the transaction (on PostgreSQL, aborted by it) usable for the rest.
                with conn.begin_nested():
                    refresh(conn, pk, self.settings, self.policies, now)
            except Exception:  # One odd ticket never stops the clock of the others.
                log.exception("ticket %d: cannot compute its SLA due times", pk)
                clock_store.mark_computed(conn, pk)

    def _due(self, conn: Connection, duty: str, low: datetime | None, high: datetime) -> list[tuple]:
        """(ticket, target, due, policy) for unmet promises due in (low, high], not yet claimed for `duty`."""
        return [item for target in TARGETS for item in store.unmet_promises(conn, duty, target, low, high)]

    def candidates_warning(self, conn: Connection, now: datetime) -> list[tuple]:
        horizon = max((p.warn_before for p in self.policies.sla.values()), default=timedelta(0))
        return self._due(conn, "warning", now, now + horizon) if horizon > timedelta(0) else []

    def handle_one_warning(self, conn: Connection, item: tuple, now: datetime) -> bool:
        """Warn the assignee (or the supervisors) once before a promise is broken."""
        pk, target, due, policy_name = item
        policy = self.policies.sla.get(policy_name)
        if policy is None or warn_time(due, policy) > now:
            return False
        if not store.claim(conn, "warning", store.due_key(pk, target, due), pk, now):
            return False
        t = _ticket(conn, pk)
        self._tell_owner(conn, t, now, Alert("sla_warning", {"ticket": {"id": t.ref}, "target": target,
                                                             "tier": t.tier, "due": due}))
        _event(conn, pk, now, "sla-warning", {"target": target, "due": _show(due)})
        return True

    def candidates_breach(self, conn: Connection, now: datetime) -> list[tuple]:
        return self._due(conn, "breach", None, now)

    def handle_one_breach(self, conn: Connection, item: tuple, now: datetime) -> bool:
        """On a broken promise: notice once, escalate one step, keep the customer informed."""
        pk, target, due, _policy = item
        if not store.claim(conn, "breach", store.due_key(pk, target, due), pk, now):
            return False
        # Locked: the escalation decides on the tier it reads (an agent's
        # change on PostgreSQL waits, and then sees the escalation).
        t = _ticket(conn, pk, lock=True)
        what = f"tier {t.tier} response" if target == "tier_response" else target.replace('_', ' ')
        # The reason names the promise, not its due time, so the report's top
        # reasons group breaches of one kind; the due time is in the event.
        reason = f"{what} SLA breached"
        told = self._tell_owner(conn, t, now, Alert("sla_breach", {"ticket": {"id": t.ref}, "target": target,
                                                                   "tier": t.tier, "due": due}))
        self._escalate(conn, t, now, reason, told, due=due)
        return True

    def _escalate(self, conn: Connection, t, now: datetime, reason: str, told: frozenset[str] = frozenset(),
                  due: datetime | None = None) -> None:
        """Tier 1 -> tier 2 -> (tier 3 when the team has it) -> the supervisors, with the
        reason recorded; routed, notified and told to the customer as every escalation is
        (inboxd.desk.escalation)."""
        before = {"tier": t.tier, "escalated": t.escalated, "assignee": t.assignee}
        step = tiers.next_step(t.tier, t.team, tiers.agents_of(self.settings.agents))
        # The supervisors' review keeps its old mark, tier 3 or above.
        tier = step if step is not None else max(t.tier, 3)
        if self._open_counts is None:
            self._open_counts = store_tiers.open_counts(conn)
        counts = self._open_counts
        routed = escalation.route(conn, self.settings, tier=step, team=t.team, assignee=t.assignee, keep=True,
                                  open_counts=counts)
        store_tiers.escalate(conn, t.pk, tier=tier, assignee=routed.assignee, now=now)
        # The ticket is open work (a breach is only ever of an open ticket): it moves between the counts.
        if routed.assignee != before["assignee"]:
            if before["assignee"] is not None:
                counts[before["assignee"]] = counts.get(before["assignee"], 0) - 1
            if routed.assignee is not None:
                counts[routed.assignee] = counts.get(routed.assignee, 0) + 1
        t.tier, t.escalated, t.assignee, t.approved_by = tier, True, routed.assignee, None
        # Whoever just had the breach notice needs no second mail about a tier
        # step; the supervisors' review is always announced to them.
        detail = escalation.follow_up(conn, self.settings, t, tier=step, routed=routed, reason=reason, trigger="sla",
                                      now=now, told=told if step is not None else frozenset())
        changes = {"tier": {"before": before["tier"], "after": tier},
                   "escalated": {"before": before["escalated"], "after": True}}
        if routed.assignee != before["assignee"]:
            changes["assignee"] = {"before": before["assignee"], "after": routed.assignee}
        if due is not None:
            detail["due"] = _show(due)
        _event(conn, t.pk, now, "escalate", {"to": tiers.target_name(step), "reason": reason, **detail,
                                             "changes": changes})

    def candidates_unassigned(self, conn: Connection, now: datetime) -> list[tuple]:
        sched = self.policies.scheduler
        return store.unassigned_waiting(conn, now - sched.unassigned_after_urgent, now - sched.unassigned_after)

    def handle_one_unassigned(self, conn: Connection, item: tuple, now: datetime) -> bool:
        """A ticket left unassigned too long goes to the supervisors (urgent ones sooner): a batch of one."""
        return self.handle_unassigned_batch(conn, [item], now) == 1

    def handle_unassigned_batch(self, conn: Connection, items: list[tuple], now: datetime) -> int:
        """`handle_one_unassigned` for a batch of items: the same mail and events, a statement per kind."""
        claimed = store.claim_many(conn, "unassigned", [(str(pk), pk) for pk, _created in items], now)
        todo = [(pk, created) for pk, created in items if str(pk) in claimed]
        tickets = _tickets(conn, [pk for pk, _created in todo])
        # Taken since the snapshot: nothing to say.
        waiting = [(tickets[pk], created) for pk, created in todo if pk in tickets and tickets[pk].assignee is None]
        latest = store.last_customer_messages(conn, [t.pk for t, _created in waiting])
        mails, done = [], []
        for t, created in waiting:
            waited = now - created
            alert = Alert("unassigned", {"ticket": {"id": t.ref, "priority": t.priority}, "waited": waited})
            mails += [workflow.notification(self.settings, self.tags, t, agent, now, alert, latest.get(t.pk)) for agent in self._supervisors(t.team)]
            done.append((t.pk, now, "inboxd", "unassigned-alert", {"waited_seconds": int(waited.total_seconds())}))
        outbox.queue_many(conn, mails)
        store.add_events(conn, done)
        return len(claimed)

    # -- waiting on the customer, and closing --------------------------------------------

    def candidates_pending(self, conn: Connection, now: datetime) -> list[int]:
        return store.pending_unreminded(conn, now - self.policies.scheduler.pending_reminder)

    def handle_one_pending_reminder(self, conn: Connection, pk: int, now: datetime) -> bool:
        """Remind the assignee of a ticket pending for too long (and, if configured, the customer): a batch of one."""
        return self.handle_pending_batch(conn, [pk], now) == 1

    def handle_pending_batch(self, conn: Connection, pks: list[int], now: datetime) -> int:
        """`handle_one_pending_reminder` for a batch of tickets: the same mail and events, a statement per kind."""
        sched = self.policies.scheduler
        inputs = clock_store.clock_inputs_many(conn, pks)
        history = clock_store.status_events_many(conn, pks)
        since = {}
        for pk in pks:
            if pk in inputs:
                began = pending_since(history.get(pk, ()), parse_time(inputs[pk][4]))
                if began is not None and began <= now - sched.pending_reminder:
                    since[pk] = began
        claimed = store.claim_many(conn, "pending", [(store.pending_key(pk, at), pk) for pk, at in since.items()],
                                   now)
        todo = [pk for pk, at in since.items() if store.pending_key(pk, at) in claimed]
        tickets = _tickets(conn, todo)
        todo = [pk for pk in todo if pk in tickets]
        latest = store.last_customer_messages(conn, [pk for pk in todo if tickets[pk].assignee])
        mails, done = [], []
        for pk in todo:
            t = tickets[pk]
            if t.assignee and (agent := self.settings.agent(t.assignee)) is not None:
                alert = Alert("pending", {"ticket": {"id": t.ref}, "waited": now - since[pk]})
                mails.append(workflow.notification(self.settings, self.tags, t, agent, now, alert, latest.get(pk)))
            if sched.pending_followup:
                # A customer mail is recorded on the ticket's thread: one at a time (`outbox.queue`).
                self._mail_customer(conn, t, now, "followup", {})
            done.append((pk, now, "inboxd", "pending-reminder", {"since": _show(since[pk])}))
        outbox.queue_many(conn, mails)
        store.add_events(conn, done)
        return len(claimed)

    def candidates_autoclose(self, conn: Connection, now: datetime) -> list[int]:
        return store.solved_before(conn, now - self.policies.scheduler.autoclose_after)

    def handle_one_autoclose(self, conn: Connection, pk: int, now: datetime) -> bool:
        """Close a solved ticket nobody objected to within autoclose_after (compare-and-swap on the status)."""
        if not store.close_solved(conn, pk, now):
            return False
        _event(conn, pk, now, "autoclose", {"changes": {"status": {"before": "solved", "after": "closed"}}})
        return True

    def candidates_survey(self, conn: Connection, now: datetime) -> list[tuple]:
        csat = self.policies.csat
        if not csat.enabled:
            return []
        return store.closed_unsurveyed(conn, now - csat.delay - timedelta(days=30), now - csat.delay)

    def handle_one_survey(self, conn: Connection, item: tuple, now: datetime) -> bool:
        """Send the satisfaction survey once, `delay` after a ticket closed."""
        pk, requester, closed_at, tags = item
        if not store.claim(conn, "survey", store.survey_key(pk, closed_at), pk, now):
            return False
        skip = self._survey_excluded(conn, pk, requester, json.loads(tags), now)
        if skip:
            _event(conn, pk, now, "no-survey", {"reason": skip})
        else:
            self._send_survey(conn, _ticket(conn, pk), now)
        return True

    def _survey_excluded(self, conn: Connection, pk: int, requester: str, tags: list[str], now: datetime) -> str:
        csat = self.policies.csat
        close = store.last_close(conn, pk)
        if close and close[0] == "close" and close[1].get("survey") is False:
            return "closed with --no-survey"
        if close and close[0] == "autoclose" and csat.exclude_autoclosed:
            return "closed automatically"
        if close and close[0] == "merge":
            return "merged"
        excluded = sorted(set(tags) & set(csat.exclude_tags))
        if excluded:
            return f"tagged {', '.join(excluded)}"
        if requester == "mailer-daemon" or outbox.bouncing_since(conn, requester, now,
                                                                 self.settings.autoreply.bounce_expiry):
            return "the customer's address bounces"
        recent = store.last_surveyed(conn, requester)
        if recent and recent > now - csat.min_interval:
            return "surveyed recently"
        return ""

    def _send_survey(self, conn: Connection, t, now: datetime) -> None:
        mailbox = self.settings.mailbox(t.mailbox)
        csat = self.policies.csat
        token = make_token(load_secret(csat.secret_file), t.ref, store.time_key(now))
        language = self._customer_language(conn, t, mailbox)
        variables = survey_variables(
            {"id": t.ref, "subject": t.subject, "tag": self.tags.tag(t.ref)},
            {"name": t.requester_name, "email": t.requester},
            {"name": mailbox.name, "address": mailbox.address, "display_name": mailbox.display_name},
            csat.scale, language=language, mailbox_address=mailbox.address, token=token)
        message_id = self._render_mail(conn, t, mailbox, "csat", variables, now, language=language)
        store.record_survey(conn, t.pk, t.requester, token, message_id, now)
        _event(conn, t.pk, now, "survey", {"message_id": message_id, "to": t.requester})

    # -- agents' summaries -------------------------------------------------------------

    def candidates_digest(self, conn: Connection, now: datetime) -> list[AgentSettings]:
        sched = self.policies.scheduler
        if now.astimezone(sched.timezone).time() < sched.digest_time:
            return []
        return [a for a in self.settings.agents if a.notify != "none"]

    def handle_one_digest(self, conn: Connection, agent: AgentSettings, now: datetime) -> bool:
        """Each morning, each agent gets their open, due and breached tickets."""
        day = now.astimezone(self.policies.scheduler.timezone).date().isoformat()
        if not store.claim(conn, "digest", f"{agent.name}:{day}", None, now):
            return False
        self._send_digest(conn, agent, now, day)
        return True

    def _send_digest(self, conn: Connection, agent: AgentSettings, now: datetime, day: str) -> None:
        rows = store.open_tickets_of(conn, agent.name)
        if not rows:
            return
        lines = []
        for ref, subject, status, priority, fr, nr, res in (r[:7] for r in rows):
            due = min((d for d in (fr, nr, res) if d), default=None)
            state = ""
            if due is not None and due <= now:
                state = "breached"
            elif due is not None and due <= now + timedelta(days=1):
                state = "due_soon"
            lines.append(DigestLine(ref, subject, status, priority, due, state))
        subject, text = digest_text(self.settings, agent, day, lines)
        mailbox = self.settings.mailbox(rows[0][7])
        outbox.queue(conn, kind="digest", mailbox=mailbox, ticket_pk=None, ref=None,
                     to=[(agent.label, agent.email)], subject=subject, text=text,
                     automatic=AUTO_GENERATED, from_name=f"{mailbox.display_name} (inboxd)", now=now, sent_copy=False)

    def candidates_weekly(self, conn: Connection, now: datetime) -> list[str]:
        sched = self.policies.scheduler
        local = now.astimezone(sched.timezone)
        if local.strftime("%a").lower() != sched.weekly_report_day or local.time() < sched.weekly_report_time:
            return []
        return [local.strftime("%G-W%V")]

    def handle_one_weekly_report(self, conn: Connection, week: str, now: datetime) -> bool:
        """Once a week, the service review goes to the supervisors."""
        if not store.claim(conn, "weekly", week, None, now):
            return False
        # Imported once a week rather than at every start (the report's code is 0.05 s of imports).
        from inboxd.reports.metrics import report_message_id, supervisors, weekly_reports

        recipients = supervisors(self.settings)
        if not recipients or not self.settings.mailboxes:
            return True
        since = now - timedelta(days=7)
        # Computed once, rendered in each recipient's own language (en, zh, zh-Hant).
        reports = weekly_reports(self.engine, self.settings, now, since=since, until=now,
                                 languages=[agent.language for agent in recipients])
        mailbox = self.settings.mailboxes[0]
        for agent in recipients:
            report = reports[agent.language]
            outbox.queue(conn, kind="report", mailbox=mailbox, ticket_pk=None, ref=None,
                         to=[(agent.label, agent.email)], subject=report.subject, text=report.text,
                         html=report.html, images=report.images, automatic=AUTO_GENERATED,
                         from_name=f"{mailbox.display_name} (inboxd)",
                         message_id=report_message_id(mailbox.domain, agent.email, since, now),
                         now=now, sent_copy=False)
        return True

    # -- backups -------------------------------------------------------------------------

    def run_backup(self, now: datetime) -> int:
        """Take the scheduled backup when one is due, then delete the oldest beyond `keep`; 1 if it took one.

        The backup runs outside any write transaction (it reads its own
        snapshot), between a claim and its record.  A failure is logged and
        the claim given back, so the next pass tries again; it never stops
        the daemon.
        """
        # Imported only where backups are configured: the backup code's imports cost every start 0.05 s.
        from inboxd.store import backup as backup_store

        conf = self.settings.backup
        with reading(self.engine) as conn:
            last = backup_store.last_backup(conn)
        if not backups.is_due(last, conf.every, now):
            return 0
        key = backups.claim_key(last)
        with writing(self.engine) as conn:
            claimed = backup_store.claim_backup(conn, key, now, now - backups.STALE_CLAIM)
        if claimed is None:
            return 0
        name = backups.backup_name(now)
        try:
            report = backup_store.take_backup(self.settings.store.url, self.settings.store.data_dir,
                                              self.policies.csat.secret_file, conf.dir / name, now,
                                              encrypt_to=conf.key_file)
        except Exception as exc:
            from inboxd.reports.prometheus import record_duty_failed  # When needed, as above.

            record_duty_failed("backup")
            log.error("scheduled backup to %s failed, retried next pass: %s", conf.dir / name,
                      " ".join(str(exc).split()) or type(exc).__name__)
            with writing(self.engine) as conn:
                backup_store.release_backup(conn, key, claimed)
            return 0
        with writing(self.engine) as conn:
            backup_store.record_backup(conn, name, now)
        log.info("backup %s: %d ticket(s), %d message(s), %d file(s), %d bytes", report.path, report.tickets,
                 report.messages, report.files, report.bytes)
        names = backup_store.folders(conf.dir)
        for old in backups.to_delete(names, conf.keep) + backups.leftovers(names):
            try:
                backup_store.delete_backup(conf.dir / old)
            except OSError as exc:
                log.warning("cannot delete old backup %s: %s", conf.dir / old, exc)
        return 1

    # -- shared helpers ------------------------------------------------------------------

    def _supervisors(self, team: str | None) -> list[AgentSettings]:
        sups = [a for a in self.settings.agents if a.role in SUPERVISORS and a.notify != "none"]
        in_team = [a for a in sups if team and team in a.teams]
        return in_team or sups

    def _tell_owner(self, conn: Connection, t, now: datetime, headline: str | Alert) -> frozenset[str]:
        """Notify the assignee, else the supervisors; returns whom."""
        agent = self.settings.agent(t.assignee) if t.assignee else None
        targets = [agent] if agent is not None and agent.notify != "none" else self._supervisors(t.team)
        for target in targets:
            notify_agent(conn, self.settings, self.tags, t.ref, target, now, headline=headline, ticket=t)
        return frozenset(a.name for a in targets)

    def _mail_customer(self, conn: Connection, t, now: datetime, template: str, extra: dict) -> None:
        mailbox = self.settings.mailbox(t.mailbox)
        variables = {
            "ticket": {"id": t.ref, "subject": t.subject, "tag": self.tags.tag(t.ref), "status": t.status},
            "customer": {"name": t.requester_name, "email": t.requester},
            "mailbox": {"name": mailbox.name, "address": mailbox.address, "display_name": mailbox.display_name},
            **extra,
        }
        self._render_mail(conn, t, mailbox, template, variables, now)

    def _customer_language(self, conn: Connection, t, mailbox) -> str:
        """The language the customer was first answered in (zh or zh-Hant), else the mailbox's."""
        return ticket_language(mailbox.language, events.recorded_language(conn, t.pk))

    def _render_mail(self, conn: Connection, t, mailbox, template: str, variables: dict, now: datetime,
                     language: str | None = None) -> str:
        """Queue the customer mail `template` renders, on the ticket's thread; returns its Message-ID.

        `language` is the customer's when the caller has already read it."""
        language = language or self._customer_language(conn, t, mailbox)
        subject = " ".join(self.templates.render(f"{template}/subject.txt", variables, mailbox=mailbox.name,
                                                 language=language).split())
        text = self.templates.render(f"{template}/body.txt", variables, mailbox=mailbox.name,
                                     language=language)
        parent, references = outbox.thread_ids(conn, t.pk)
        return outbox.queue(conn, kind=template, mailbox=mailbox, ticket_pk=t.pk, ref=t.ref,
                            to=[(t.requester_name, t.requester)], subject=tagged_subject(subject, t.ref, self.tags),
                            text=text, in_reply_to=parent, references=references, automatic=AUTO_GENERATED,
                            now=now, sent_copy=self.settings.outbox.sent_copy, record_on_ticket="auto")


def _ticket(conn: Connection, pk: int, *, lock: bool = False) -> workflow.Ticket:
    return workflow.load(conn, store.ticket_ref(conn, pk), lock=lock)


def _tickets(conn: Connection, pks: list[int]) -> dict[int, workflow.Ticket]:
    """`_ticket` of each of `pks` that exists, by id, in one query."""
    found = {}
    for row in store_tickets.tickets_by_ids(conn, pks):
        # As `workflow.load` makes a Ticket of the same row: tags are JSON text, escalated 0/1 on SQLite.
        values = list(row)
        values[9] = json.loads(values[9])
        values[12] = bool(values[12])
        found[values[0]] = workflow.Ticket(*values)
    return found


def _event(conn: Connection, pk: int | None, now: datetime, action: str, detail: dict) -> None:
    # Filing's compiled insert: the same row as `events.add_event`, without building the statement.
    filing.add_event(conn, pk, now, "inboxd", action, detail or {})


def _show(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _utcnow() -> datetime:
    return datetime.now(UTC)
