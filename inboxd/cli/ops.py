"""The operator's commands: `status`, `audit`, `quarantine show|retry`, and the dry run's report.

They answer an admin's questions about the daemon rather than about
tickets: is every mailbox healthy, what is the history cut-off, did inboxd
lose a mail, and can a quarantined mail be filed now that a bug is fixed.
Each reads the store (and, for `audit`, the IMAP server) and prints a table
for a person or JSON with `--json`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Optional

import typer

from inboxd.cli.main import JsonOpt, UserError, _ctx, _print_json, _store, app, quarantine_app
from inboxd.cli.terminal import printable


@contextlib.contextmanager
def sync_progress() -> Iterator:
    """The progress display for a foreground sync: bars on a terminal, log lines otherwise."""
    from inboxd.sync.progress import TerminalProgress, for_stream

    display = for_stream(sys.stderr)
    if isinstance(display, TerminalProgress):
        with display:
            yield display
    else:
        yield display


def print_cycle(report, settings) -> None:
    """The dry run's table: per folder, what a real run would do now."""
    from inboxd.desk.ingest import BatchResult

    rows = []
    for mb in settings.mailboxes:
        sent = mb.imap.sent_folder
        folders = mb.imap.folders + ((sent,) if sent and sent not in mb.imap.folders else ())
        for folder in folders:
            r = report.folders.get((mb.name, folder), BatchResult())
            rows.append({"mailbox": mb.name, "folder": folder, "messages": report.messages.get((mb.name, folder), 0),
                         "new_tickets": r.new_tickets - r.history_tickets, "history_tickets": r.history_tickets,
                         "history_skipped": r.skipped, "acknowledgements": r.acks, "quarantined": r.quarantined,
                         "already_known": r.duplicates})
    header = ("MAILBOX/FOLDER", "MESSAGES", "NEW", "HISTORY", "SKIPPED", "ACKS", "QUARANTINED", "KNOWN")
    keys = ("messages", "new_tickets", "history_tickets", "history_skipped", "acknowledgements", "quarantined",
            "already_known")
    typer.echo("dry run: nothing was written, sent or appended; a real run now would do this:")
    typer.echo(f"{header[0]:<32}" + "".join(f"{h:>12}" for h in header[1:]))
    for row in rows:
        typer.echo(f"{printable(row['mailbox'] + '/' + row['folder']):<32}" + "".join(f"{row[k]:>12}" for k in keys))
    totals = {k: sum(row[k] for row in rows) for k in keys}
    typer.echo(f"{'total':<32}" + "".join(f"{totals[k]:>12}" for k in keys))


# -- status ----------------------------------------------------------------------------------------


def show_status(state, as_json: bool) -> None:
    """Health per mailbox and folder: state, last sync, owner, history cut-off, outbox, quarantine."""
    data = state.call("status")
    if as_json:
        _print_json(data)
        return
    for mb in data["mailboxes"]:
        typer.echo(f"{mb['name']}  <{mb['address']}>  {mb['state']}"
                   + ("" if mb["healthy"] else f"  unhealthy: {printable('; '.join(mb['reasons']))}"))
        for f in mb["folders"]:
            cut = f["history_before"] or "-"
            lag = "-" if f["lag"] is None else f["lag"]
            line = (f"  {printable(f['folder']):<20} {f['state']:<8} last sync {f['last_sync'] or 'never'}"
                    f"  uid {f['last_uid']}  lag {lag}  history before {cut}")
            if f["lease"] and f["lease"]["live"]:
                line += f"  held by {f['owner']} until {f['lease']['expires_at']}"
            elif f["lease"]:
                # Its holder died or hung: another daemon may take the folder over.
                line += f"  lease of {f['lease']['holder']} expired {f['lease']['expires_at']}"
            elif f["owner"]:
                line += f"  owner {f['owner']}"
            typer.echo(line)
            if f["error"]:
                typer.echo(f"    error since {f['failing_since']}: {printable(f['error'])}")
            wb = f.get("write_back")
            if wb:
                # A folder that refuses keywords is said plainly (docs/practices/writeback.md).
                refused = "  (the server refuses custom keywords here)" if wb["keywords"] == "refused" else ""
                typer.echo(f"    write-back: keywords {wb['keywords']}, \\Seen {wb['seen']}, {wb['stores']} STORE(s)"
                           + refused + (f"; last write failed: {printable(wb['error'])}" if wb["error"] else ""))
    o = data["outbox"]
    typer.echo(f"outbox: {o['queued']} queued, {o['sending']} sending, {o['failed']} failed"
               + (f"; oldest queued {o['oldest_queued_at']}" if o["oldest_queued_at"] else ""))
    typer.echo(f"quarantine: {data['quarantine']} message(s)")
    if data["state"] != "ok":
        raise typer.Exit(1)


# -- health and metrics ---------------------------------------------------------------------------


@app.command()
def health(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Whether every mailbox synced within its interval and the store answers; the reason per mailbox.

    Exit 0 when healthy, 1 otherwise.
    """
    state = _ctx(ctx)
    if state.direct:
        # The owner asks the store itself, so a store that does not answer is reported, not a traceback.
        from inboxd.desk.health import assess
        from inboxd.reports.status import health_json, read_health

        settings = state.settings
        now = datetime.now(UTC)
        engine, error = _store_or_error(settings)
        verdict = (read_health(engine, settings, now) if engine is not None
                   else assess(settings.mailboxes, {}, error, now))
        data = health_json(verdict, now)
    else:
        data = state.call("health")
    if as_json:
        _print_json(data)
    else:
        _print_health(data)
    if not data["ok"]:
        raise typer.Exit(1)


def _print_health(data: dict) -> None:
    if data.get("store", {}).get("error"):
        typer.echo(f"store: not answering: {printable(data['store']['error'])}")
    for m in data["mailboxes"]:
        typer.echo(f"{m['name']}: {'ok' if m['ok'] else 'unhealthy'}"
                   + (f": {printable('; '.join(m['reasons']))}" if m["reasons"] else ""))
    typer.echo("ok" if data["ok"] else "unhealthy")


@app.command()
def metrics(ctx: typer.Context) -> None:
    """Print the metrics in the Prometheus text format (what /metrics will serve)."""
    state = _ctx(ctx)
    if not state.direct:
        sys.stdout.write(state.call("metrics"))
        return
    from inboxd.reports.prometheus import exposition

    settings = state.settings
    engine, _error = _store_or_error(settings)
    sys.stdout.write(exposition(engine, settings, lambda: datetime.now(UTC)).decode())


def _store_or_error(settings):
    """The store's engine, or None and why when a configured store does not answer (a missing one is a mistake)."""
    try:
        return _store(settings, create=False), None
    except UserError:
        raise
    except Exception as exc:  # A server that is down is what health and metrics report, not a traceback.
        return None, " ".join(str(exc).split())[:300] or type(exc).__name__


# -- audit -----------------------------------------------------------------------------------------


@app.command()
def audit(ctx: typer.Context,
          mailbox: Optional[str] = typer.Option(None, "--mailbox", help="Only this mailbox."),
          as_json: bool = JsonOpt) -> None:
    """Account for every message on the server: stored, quarantined, skipped as history, missing.

    Exit 0 only when nothing is missing.
    """
    from inboxd.reports.audit import audit_mailbox
    from inboxd.store.engine import reading

    _ctx(ctx).require_owner("audit")
    settings = _ctx(ctx).settings
    mailboxes = settings.mailboxes
    if mailbox is not None:
        mailboxes = tuple(m for m in mailboxes if m.name == mailbox)
        if not mailboxes:
            raise UserError(f"unknown mailbox {mailbox!r}; known: {', '.join(m.name for m in settings.mailboxes)}")
    engine = _store(settings, create=False)
    rows = []
    for mb in mailboxes:
        with reading(engine) as conn:
            rows += audit_mailbox(conn, mb)
    if as_json:
        _print_json(rows)
    else:
        head = ("MAILBOX/FOLDER", "ON SERVER", "STORED", "QUARANTINED", "HISTORY", "NOT FILED", "UNSYNCED", "MISSING")
        typer.echo(f"{head[0]:<32}" + "".join(f"{h:>12}" for h in head[1:]))
        for r in rows:
            name = printable(f"{r['mailbox']}/{r['folder']}")
            if r["error"]:
                typer.echo(f"{name:<32}  error: {printable(r['error'])}")
                continue
            typer.echo(f"{name:<32}" + "".join(f"{r[k]:>12}" for k in (
                "on_server", "stored", "quarantined", "skipped_history", "not_filed", "unsynced")) +
                f"{len(r['missing']):>12}")
            if r["missing"]:
                shown = ", ".join(map(str, r["missing"][:50]))
                more = f" and {len(r['missing']) - 50} more" if len(r["missing"]) > 50 else ""
                typer.echo(f"    missing UIDs (UIDVALIDITY {r['uidvalidity']}): {shown}{more}")
    if any(r["missing"] or r["error"] for r in rows):
        raise typer.Exit(1)


# -- quarantine --------------------------------------------------------------------------------------


@quarantine_app.command("show")
def quarantine_show(ctx: typer.Context, quarantine_id: int = typer.Argument(..., metavar="ID"),
                    raw: bool = typer.Option(False, "--raw", help="Write the message's exact bytes to stdout."),
                    as_json: bool = JsonOpt) -> None:
    """One quarantined message: where it was, why, and its headers (or with --raw, its bytes)."""
    state = _ctx(ctx)
    if not state.direct:
        if raw:
            raise UserError("--raw writes the stored file's bytes: it is for the store's owner")
        info = state.call("quarantine_show", qid=quarantine_id)
    else:
        from inboxd.store.engine import reading
        from inboxd.desk.quarantine import load

        settings = state.settings
        with reading(_store(settings, create=False)) as conn:
            item = load(conn, quarantine_id, settings.store.data_dir)
        if item is None:
            raise UserError(f"no quarantined message {quarantine_id}")
        if item.raw_path is not None and not item.raw_path.is_file():
            raise UserError(f"quarantine {quarantine_id}: its raw bytes' file {printable(str(item.raw_path))}"
                            " is gone")
        if raw:
            item.write_raw(sys.stdout.buffer)
            return
        info = item.describe()
    if as_json:
        _print_json(info)
        return
    typer.echo(f"quarantine {info['id']}: {info['mailbox']}/{printable(info['folder'])} uid {info['uid']} "
               f"(UIDVALIDITY {info['uidvalidity']}), {info['size']} bytes, sha256 {info['raw_sha256']}")
    typer.echo(f"at {info['at']}; arrived {info['arrived_at'] or 'unknown'}")
    if info["raw_path"]:
        typer.echo(f"raw bytes in {printable(info['raw_path'])}")
    typer.echo(f"reason: {printable(info['reason'])}")
    typer.echo("")
    typer.echo(printable(info["headers"]).rstrip())


@quarantine_app.command("retry")
def quarantine_retry(ctx: typer.Context,
                     quarantine_id: Optional[int] = typer.Argument(None, metavar="[ID]"),
                     all_: bool = typer.Option(False, "--all", help="Retry every quarantined message."),
                     as_json: bool = JsonOpt) -> None:
    """File a quarantined message again (after a fix); success removes it from quarantine."""
    if (quarantine_id is None) == (not all_):
        raise UserError("give one quarantine ID or --all")
    outcomes = _ctx(ctx).call("quarantine_retry", qid=quarantine_id, all=all_)
    if as_json:
        _print_json(outcomes)
    else:
        for o in outcomes:
            if o["filed"]:
                typer.echo(f"quarantine {o['id']}: filed ({o['outcome']})")
            else:
                typer.echo(f"quarantine {o['id']}: still quarantined: {printable(o['reason'])}")
    if any(not o["filed"] for o in outcomes):
        raise typer.Exit(1)


# -- access log ----------------------------------------------------------------------------------------


@app.command("access-log")
def access_log(ctx: typer.Context,
               limit: int = typer.Option(200, "--limit", min=1, help="The newest N entries."),
               as_json: bool = JsonOpt) -> None:
    """Who exported tickets, read per-agent numbers or unmasked data, or made or revoked a token (supervisors)."""
    rows = _ctx(ctx).call("access_log", limit=limit)
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        d = dict(r["detail"])
        how = f"{d.pop('via', '?')}, {d.pop('origin', '?')}" + (f", {d.pop('by')}" if d.get("by") else "")
        d.pop("by", None)
        shown = ", ".join(f"{k}={v}" for k, v in d.items() if v not in (None, ""))
        typer.echo(printable(f"{r['at']}  {r['actor']:<12} {r['action']:<14} {shown}  ({how})"))
    typer.echo(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
