"""The duty that tells the admins, once, that a mailbox's OAuth2 sign-in broke.

The IMAP poller marks every folder of a mailbox failing the moment a token
refresh fails (inboxd.sync.imap, with the error inboxd.oauth raised), which
turns health and `inboxd status` red at once.  This duty turns the same
fact into one mail to the admins (the supervisors when there is no admin):
the claim's key is the mailbox and the time its first folder started
failing, so the mail is not repeated at every pass while the failure lasts,
and a new failure after the mailbox recovered gets a new one.  It reads the
folder states through inboxd.store.health and writes through the outbox.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from inboxd.config import AgentSettings, MailboxSettings, Settings
from inboxd.outbound import outbox
from inboxd.outbound.loop import AUTO_GENERATED
from inboxd.store import duties as claims
from inboxd.store.health import folder_states

DUTY = "oauth"
# The names of inboxd.oauth's errors that mean "sign in again", as the poller records them.
SIGN_IN_ERRORS = ("RefreshFailed:", "NotLoggedIn:")

_TEXT = {
    "en": ("[inboxd] {mailbox}: OAuth2 sign-in failed; new mail is not being read",
           "inboxd could not renew the OAuth2 access token of mailbox {mailbox} ({address}).\n\n"
           "  {error}\n\n"
           "Until the mailbox is signed in again, no new mail is read from it.  On the inboxd\n"
           "server, as the daemon's user, run:\n\n"
           "  inboxd oauth login {mailbox}\n\n"
           "This mail is sent once for this failure.\n"),
    "zh": ("[inboxd] {mailbox}：OAuth2 登录失效，新邮件暂停读取",
           "inboxd 无法续期邮箱 {mailbox}（{address}）的 OAuth2 访问令牌。\n\n"
           "  {error}\n\n"
           "重新登录之前，该邮箱的新邮件不会被读取。请在 inboxd 服务器上以守护进程的用户运行：\n\n"
           "  inboxd oauth login {mailbox}\n\n"
           "此次故障只发送这一封提醒。\n"),
}


def candidates(conn: Connection, settings: Settings, now: datetime) -> list[tuple[str, str, datetime]]:
    """(mailbox, error, failing since) of each OAuth2 mailbox whose first folder fails to sign in."""
    if not any(mb.imap.oauth is not None for mb in settings.mailboxes):
        return []     # the common case: no query at every pass
    states = folder_states(conn)
    out = []
    for mb in settings.mailboxes:
        if mb.imap.oauth is None:
            continue
        st = states.get((mb.name, mb.imap.folders[0]))
        if st is None or st.ok or st.failing_since is None or not st.error.startswith(SIGN_IN_ERRORS):
            continue
        since = st.failing_since if st.failing_since.tzinfo else st.failing_since.replace(tzinfo=UTC)
        out.append((mb.name, st.error, since))
    return out


def handle_one(conn: Connection, settings: Settings, item: tuple[str, str, datetime], now: datetime) -> bool:
    """Claim the failure and queue one mail to each admin; False when it was told already."""
    name, error, since = item
    if not claims.claim(conn, DUTY, f"{name}:{claims.time_key(since)}", None, now):
        return False
    failing = settings.mailbox(name)
    sender = _sender(settings, failing)
    for agent in _admins(settings):
        subject, text = _TEXT["en" if agent.language == "en" else "zh"]
        values = {"mailbox": name, "address": failing.address, "error": error}
        outbox.queue(conn, kind="notification", mailbox=sender, ticket_pk=None, ref=None,
                     to=[(agent.label, agent.email)], subject=subject.format(**values), text=text.format(**values),
                     automatic=AUTO_GENERATED, from_name=f"{sender.display_name} (inboxd)", now=now,
                     sent_copy=False)
    return True


def _admins(settings: Settings) -> list[AgentSettings]:
    """The admins who take mail, else the supervisors."""
    admins = [a for a in settings.agents if a.role == "admin" and a.notify != "none"]
    return admins or [a for a in settings.agents if a.role == "supervisor" and a.notify != "none"]


def _sender(settings: Settings, failing: MailboxSettings) -> MailboxSettings:
    """A mailbox that can send without the failing token, else the failing one (its mail then waits)."""
    for mb in settings.mailboxes:
        smtp = settings.smtp_for(mb)
        if smtp is not None and (smtp.oauth is None or smtp.oauth.token_file != failing.imap.oauth.token_file):
            return mb
    return failing
