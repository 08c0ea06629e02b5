"""A daemon killed outright leaves no processes behind."""

from __future__ import annotations

import os
import signal

import psutil

from inboxd.testing.mail import make_mail
from tests.support import db_count, start_daemon, stop_daemon, wait_until, write_config


def _alive(proc: psutil.Process) -> bool:
    # An orphan that exited may wait as a zombie for a parent that never reaps: it is gone all the same.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_of_the_daemon_alone_ends_its_parser_worker(tmp_path, dovecot, imap_user):
    """Defect: SIGKILL of the main process alone left the parser worker and the
    multiprocessing resource tracker alive for 120 s and more.  (The worker is
    now a plain child process; there is no resource tracker any more.)"""
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    # Enough mail in one batch that the daemon hands it to its parser worker.
    dovecot.append_many(imap_user, "INBOX", (make_mail(subject=f"Question {i}") for i in range(40)))
    daemon = start_daemon(config, tmp_path / "daemon.log")
    children: list[psutil.Process] = []
    try:
        wait_until(lambda: db_count(config, "select count(*) from message") == 40, timeout=60, what="the sync")
        children = psutil.Process(daemon.pid).children(recursive=True)
        commands = [" ".join(c.cmdline()) for c in children]
        assert any("inboxd.sync.worker" in c for c in commands), commands  # the parser worker
        assert not any("resource_tracker" in c for c in commands), commands
        os.kill(daemon.pid, signal.SIGKILL)  # The daemon alone, not its process group.
        daemon.wait(timeout=30)
        wait_until(lambda: not any(_alive(c) for c in children), timeout=10, interval=0.1,
                   what="the daemon's child processes to end")
    finally:
        leftovers = [c for c in children if _alive(c)]
        for child in leftovers:
            child.kill()
        stop_daemon(daemon, signal.SIGKILL)
    assert leftovers == []
