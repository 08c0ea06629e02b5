"""Mail that arrives between a sync and the SELECT before IDLE is picked up at once.

Defect: `_wait_for_mail` ignored the UIDNEXT the server reported when it
selected the folder for IDLE, and IDLE announces only mail that arrives
after it starts; such mail waited for the IDLE renewal, 25 minutes later.
"""

from __future__ import annotations

import threading

from inboxd.config import load_settings
from inboxd.store.engine import open_store
from inboxd.sync.imap import MailboxPoller, connect
from inboxd.sync.sink import StoreSink
from inboxd.testing.mail import make_mail
from tests.support import db_count, write_config


def test_mail_between_sync_and_idle_is_not_left_waiting(tmp_path, dovecot, imap_user):
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}], poll_interval=300)
    dovecot.append(imap_user, "INBOX", make_mail(subject="Before the sync"))
    settings = load_settings(config)
    engine = open_store(settings.store.url)
    sink = StoreSink(engine, settings, workers=0)
    real_state = sink.folder_state
    arrived = []

    def state_then_deliver(mailbox, folder, error, now):
        # Runs right after the folder's sync, before the poller selects it for IDLE.
        real_state(mailbox, folder, error, now)
        if not arrived:
            arrived.append(dovecot.append(imap_user, "INBOX", make_mail(subject="In the gap")))

    sink.folder_state = state_then_deliver
    poller = MailboxPoller(settings.mailboxes[0], sink)
    client = connect(settings.mailboxes[0].imap)
    try:
        poller.sync(client)
        assert arrived and db_count(config, "SELECT count(*) FROM ticket") == 1
        waiter = threading.Thread(target=poller._wait_for_mail, args=(client,), daemon=True)
        waiter.start()
        waiter.join(timeout=60)
        assert not waiter.is_alive(), "the poller went into IDLE with unsynced mail in the folder"
        poller.sync(client)
        assert db_count(config, "SELECT count(*) FROM ticket") == 2
        # With nothing new, the next wait is a real IDLE (woken here by the stop event).
        poller.stop.set()
        poller._wait_for_mail(client)
    finally:
        client.logout()
        sink.close()
