"""`inboxd oauth login MAILBOX`: sign a mailbox in with OAuth2 once (device code, or a browser and PKCE).

For the store's owner only (like `check-config`): it writes the encrypted
refresh token into [store] data_dir/oauth/, which only the daemon's user may
read.  The flow itself, the file and its key are inboxd.oauth's.
"""

from __future__ import annotations

import sys

import typer

from inboxd.cli.main import PLAIN_HELP, UserError, _ctx, app

oauth_app = typer.Typer(help="OAuth2 sign-in of mailboxes (Gmail, Microsoft 365, any RFC 8628 provider).",
                        no_args_is_help=True, rich_markup_mode=PLAIN_HELP)
app.add_typer(oauth_app, name="oauth")


@oauth_app.command("login")
def login(ctx: typer.Context,
          mailbox: str = typer.Argument(..., metavar="MAILBOX", help="The [[mailboxes]] name.")) -> None:
    """Sign the mailbox in: open the URL shown (and enter the code, or let the browser come back), and the
    refresh token is stored, encrypted, mode 0600."""
    from inboxd import oauth

    _ctx(ctx).require_owner("oauth login")
    settings = _ctx(ctx).settings
    try:
        mb = settings.mailbox(mailbox)
    except LookupError as exc:
        raise UserError(str(exc).strip("'\"")) from None
    conf = mb.imap.oauth or (mb.smtp.oauth if mb.smtp is not None else None)
    if conf is None:
        raise UserError(f"mailbox {mailbox} does not sign in with OAuth2: set auth = \"oauth2\" in its"
                        " [mailboxes.imap] (or [mailboxes.smtp]) and give it a [mailboxes.oauth] table")
    try:
        stored = oauth.login(conf, show=lambda text: typer.echo(text, err=True), paste=sys.stdin)
    except oauth.OAuthError as exc:
        raise UserError(f"mailbox {mailbox}: {exc}") from None
    who = stored.account or "an account the provider did not name"
    typer.echo(f"mailbox {mailbox}: signed in as {who}; the refresh token is stored encrypted in {conf.token_file}")
