"""`inboxd token create|list|revoke`: API tokens for agents who use inboxd from another machine.

Each command is one operation of the daemon's API (inboxd.api.routes:
token_create, token_list, token_revoke), run directly for the store's owner
or through the API for everyone else (`Context.call` of inboxd.cli.main); the rules of
who may do what are in inboxd.desk.tokens.  The secret is printed once, by
`create`, and never again: the store keeps only its hash.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Optional

import typer

from inboxd.cli.main import PLAIN_HELP, JsonOpt, _ctx, _print_json, app
from inboxd.cli.terminal import printable

token_app = typer.Typer(help="API tokens for agents on other machines (the daemon's API over TCP with TLS).",
                        no_args_is_help=True, rich_markup_mode=PLAIN_HELP)
app.add_typer(token_app, name="token")


def _call(ctx: typer.Context, op: str, params: dict):
    return _ctx(ctx).call(op, **params)


@token_app.command("create")
def create(ctx: typer.Context,
           agent: Optional[str] = typer.Argument(None, metavar="[AGENT]",
                                                 help="Whose token (default: yours; others' for admins)."),
           days: Optional[int] = typer.Option(None, "--days", metavar="N",
                                              help="How long it lasts (default: [api] token_days, 90)."),
           label: str = typer.Option("", "--label", metavar="TEXT", help="Where it is used, e.g. a machine's name."),
           as_json: bool = JsonOpt) -> None:
    """Make a token and print its secret, once."""
    made = _call(ctx, "token_create", {"agent": agent, "days": days, "label": label})
    if as_json:
        _print_json(made)
        return
    label = f" ({printable(made['label'])})" if made.get("label") else ""
    typer.echo(f"token {made['id']} for {made['agent']}{label}, valid until {made['expires_at']}:")
    typer.echo(f"  {made['token']}")
    typer.echo("This secret is not shown again (inboxd keeps only its hash). On the agent's machine:")
    typer.echo(f"  export INBOXD_URL={_url(_ctx(ctx))} INBOXD_TOKEN={made['token']}")


def _url(state) -> str:
    """The API's address for the hint: the one in use, else the config's [api] listen, else a placeholder."""
    url = os.environ.get("INBOXD_URL", "")
    if url.startswith("https://"):
        return url
    listen = state.settings.api.listen if state.direct else None
    if not listen:
        return "https://HOST:8443"
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        # Listening everywhere: the machine's own name is what agents elsewhere use.
        host = socket.getfqdn()
    return f"https://{'[' + host + ']' if ':' in host else host}:{port}"


@token_app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Tokens: yours, or everyone's for an admin.  Never the secrets."""
    rows = _call(ctx, "token_list", {})
    if as_json:
        _print_json(rows)
        return
    if not rows:
        typer.echo("no tokens")
        return
    # The contract's times are ISO 8601 UTC with a Z, which compare as text.
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    table = [("ID", "AGENT", "STATE", "EXPIRES", "LAST USED", "CREATED BY", "LABEL")]
    for r in rows:
        state = "revoked" if r["revoked_at"] else "expired" if r["expires_at"] <= now else "active"
        table.append((str(r["id"]), r["agent"], state, _minute(r["expires_at"]), _minute(r["last_used_at"]),
                      r["created_by"], printable(r["label"] or "")))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])


def _minute(stamp: str | None) -> str:
    # "2027-01-01T09:30:00Z" -> "2027-01-01 09:30Z": the seconds of a token's times tell nobody anything.
    return "-" if not stamp else stamp[:16].replace("T", " ") + "Z"


@token_app.command("revoke")
def revoke(ctx: typer.Context, token_id: int = typer.Argument(..., metavar="ID", help="The token's id (token list)."),
           as_json: bool = JsonOpt) -> None:
    """Revoke a token: it is refused from now on."""
    row = _call(ctx, "token_revoke", {"tid": token_id})
    if as_json:
        _print_json(row)
        return
    typer.echo(f"token {row['id']} of {row['agent']} revoked on {row['revoked_at']} by {row['revoked_by']}")
