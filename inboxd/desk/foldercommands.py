"""Folders as commands: act on a message an agent moved into a command folder, once, as the mailbox.

`[mailboxes.imap] command_folders = { "Desk/Close" = "close", ... }` names
folders whose meaning is a command.  For each message found there the IMAP
edge (inboxd.sync.imap) asks `act` what to do; `act` finds the ticket the
message was filed on and the folder it was filed from (its sighting), runs
the folder's command on the ticket through the API's handlers with the
mailbox itself as the caller (via "folder"; role supervisor, since the
admin, who chose the folder's command, may allow it), and returns the folder
to move the message back to.  The edge moves it (UID MOVE, RFC 6851).

Exactly once: the command's history event carries an origin unique to the
message's place (folder, UIDVALIDITY, UID), and a `duty` row claims the
place once it is done (inboxd.store.mailcommands).  A daemon killed after
acting but before claiming sees the origin in the history and does not act
again; killed after claiming but before moving, it only moves.

What each command does: close, solve and pending set that status
(close with the survey, as `inboxd close` does); spam tags the ticket
"spam" and closes it without a survey.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from inboxd.config import AgentSettings, MailboxSettings, Settings
from inboxd.store import mailcommands as rows
from inboxd.store.engine import reading, writing

log = logging.getLogger("inboxd.desk.foldercommands")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A folder command as API operations: (op, parameters besides the ticket's id).
OPERATIONS: dict[str, tuple[tuple[str, dict], ...]] = {
    "close": (("close", {"survey": True}),),
    "solve": (("set_status", {"status": "solved"}),),
    "pending": (("set_status", {"status": "pending"}),),
    "spam": (("tag", {"tags": ["spam"]}), ("close", {"survey": False})),
}


@dataclass(frozen=True)
class Outcome:
    back_to: str            # the folder to move the message back to
    acted: bool             # False: acted on before (a restart), or nothing to act on
    note: str = ""


def mailbox_actor(mailbox: MailboxSettings) -> AgentSettings:
    """The caller a command folder acts as: the mailbox itself."""
    return AgentSettings(name=mailbox.name, email=mailbox.address, role="supervisor",
                         display_name=mailbox.display_name)


def act(engine: Engine, settings: Settings, mailbox: MailboxSettings, folder: str, uidvalidity: int, uid: int,
        message_id: str | None, now: datetime) -> Outcome:
    """Run `folder`'s command on the ticket of the message at (folder, uidvalidity, uid), once; where it goes back."""
    from inboxd.api.handlers import ApiError, handle
    from inboxd.api.identity import Caller

    command = mailbox.imap.command_folders[folder]
    home = mailbox.imap.folders[0]
    key = rows.folder_key(mailbox.name, folder, uidvalidity, uid)
    with reading(engine) as conn:
        found = rows.sighting_of(conn, mailbox.name, message_id) if message_id else None
        done = rows.folder_action_done(conn, key)
    if found is None:
        return Outcome(home, False, f"no filed message <{message_id}>; moved to {home} untouched")
    ticket_pk, ref, filed_from = found
    back = filed_from if filed_from not in mailbox.imap.command_folders else home
    if done:
        return Outcome(back, False, "acted on before")
    origin = f"folder {folder} of {mailbox.name} (uidvalidity {uidvalidity}, uid {uid})"
    caller_agent = mailbox_actor(mailbox)
    notes = []
    for i, (op, params) in enumerate(OPERATIONS[command]):
        step_origin = f"{origin}, step {i + 1}"
        with reading(engine) as conn:
            if rows.ran(conn, ticket_pk, step_origin, EPOCH):
                continue
        try:
            handle(op, {"id": ref, **params}, Caller(caller_agent, "folder", step_origin), settings=settings,
                   engine=engine, now=now)
        except ApiError as exc:
            # Already closed, say: nothing to do, and nothing to repeat.
            notes.append(str(exc))
    with writing(engine) as conn:
        rows.claim_folder_action(conn, ticket_pk, key, now)
    log.info("<%s> %s: %s on %s%s; back to %s", message_id, folder, command, ref,
             f" ({'; '.join(notes)})" if notes else "", back)
    return Outcome(back, True, "; ".join(notes))


__all__ = ["OPERATIONS", "Outcome", "act", "mailbox_actor"]
