"""The desk's small tools: `new` (a ticket opened by hand), `customer EMAIL` and `set` (custom fields).

Each is a thin command over the desk: `inboxd.desk.newticket` opens the
ticket through the ingest pipeline's decide and apply stages,
`inboxd.desk.views.customer_view` reads a customer's record, and the
workflow's `set_field` checks and records a field.  Mistakes are one line on
stderr and a non-zero exit, as everywhere in the CLI.
"""

from __future__ import annotations

from typing import Optional

import typer

from inboxd.cli.main import JsonOpt, TicketId, UserError, _complete_agents, _ctx, _edit, _print_json, app
from inboxd.cli.terminal import printable


@app.command("new")
def new(
    ctx: typer.Context,
    mailbox: str = typer.Option(..., "--mailbox", help="The mailbox the ticket belongs to (its address answers)."),
    requester: str = typer.Option(..., "--requester", metavar="EMAIL", help="The customer's email address."),
    name: str = typer.Option("", "--name", help="The customer's name."),
    subject: str = typer.Option(..., "--subject", help="The ticket's subject."),
    message: Optional[str] = typer.Option(None, "-m", "--message",
                                          help="What the customer asked; without it $EDITOR opens."),
    no_ack: bool = typer.Option(False, "--no-ack", help="Send the customer no acknowledgement."),
    priority: Optional[str] = typer.Option(None, "--priority", help="low, normal, high or urgent."),
    assign: Optional[str] = typer.Option(None, "--assign", metavar="AGENT", autocompletion=_complete_agents,
                                         help="Assign it to this agent."),
    take: bool = typer.Option(False, "--take", help="Assign it to yourself."),
    as_json: bool = JsonOpt,
) -> None:
    """Open a ticket by hand, for a phone call or a walk-in: routed, clocked and acknowledged as mail is."""
    state = _ctx(ctx)
    if take and assign:
        raise UserError("give --assign AGENT or --take, not both")
    if message is None:
        message = _edit(f"\n\n# New ticket for {requester}: {subject}\n"
                        "# Write what the customer asked.  Lines starting with # are dropped.\n")
    row = state.call("new", mailbox=mailbox, requester=requester.strip(), name=name.strip(), subject=subject.strip(),
                     message=message, ack=not no_ack, priority=priority, assign=assign, take=take)
    if not as_json:
        typer.echo(row["id"])
        return
    _print_json(row)


@app.command("customer")
def customer(ctx: typer.Context, email: str = typer.Argument(..., metavar="EMAIL"), as_json: bool = JsonOpt) -> None:
    """A customer's tickets, newest first, with their satisfaction history."""
    from inboxd.localtime import format_local

    state = _ctx(ctx)
    record = state.call("customer", email=email)
    if as_json:
        _print_json(record)
        return
    if not record["tickets"]:
        raise UserError(f"no tickets from {email}")
    reader = state.reader()
    zone, language = reader["zone"], reader["language"]

    def when(text: str | None) -> str:
        from datetime import datetime

        return (format_local(datetime.fromisoformat(text.replace("Z", "+00:00")), zone, language, year=True)
                if text else "-")

    s = record["summary"]
    out = [f"{record['name']} <{record['email']}>".strip(),
           f"{s['tickets']} ticket(s), {s['open']} open; {s['rated']} of {s['surveys']} survey(s) answered"
           + (f", average rating {s['average_rating']}" if s["average_rating"] is not None else ""), ""]
    for t in record["tickets"]:
        fields = "  ".join(f"{k}={v}" for k, v in t["fields"].items())
        out.append(f"{t['id']:<10} {t['status']:<8} {when(t['created_at']):<18} {t['assignee'] or '-':<10} "
                   f"{t['subject'][:60]}" + (f"  [{fields}]" if fields else ""))
    if record["csat"]:
        out += ["", "Satisfaction:"]
        for h in record["csat"]:
            rating = "no answer" if h["rating"] is None else f"{h['rating']} {h['label'] or ''}".strip()
            comment = f"  \"{h['comment']}\"" if h["comment"] else ""
            out.append(f"  {h['ticket']:<10} {when(h['at'] or h['sent_at']):<18} {rating}{comment}")
    # Names, subjects and comments come from customers' mail (see inboxd.cli.terminal).
    typer.echo(printable("\n".join(out)))


@app.command("set")
def set_field(
    ctx: typer.Context,
    ticket_id: str = TicketId,
    field: str = typer.Argument(..., metavar="FIELD", help="A field from [[fields]] in inboxd.toml."),
    value: Optional[str] = typer.Argument(None, metavar="[VALUE]", help="One of the field's choices, if it has any."),
    clear: bool = typer.Option(False, "--clear", help="Remove the field's value."),
    as_json: bool = JsonOpt,
) -> None:
    """Set a custom field on a ticket (e.g. `inboxd set T-1000 问题类型 售后维修`), or --clear it."""
    if clear == (value is not None):
        raise UserError("give a VALUE, or --clear to remove the field")
    r = _ctx(ctx).call("set_field", id=ticket_id, field=field, value=None if clear else value)
    _done_text = f"{ticket_id}: {field} cleared" if clear else f"{ticket_id}: {field} = {r['after']}"
    if as_json:
        _print_json(r)
    else:
        typer.echo(_done_text)
