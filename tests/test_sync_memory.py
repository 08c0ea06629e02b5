"""What keeps a first sync's memory down (docs/practices/startup-memory.md, "Round 5").

`run --once` ends its parser worker as soon as the sync is done: the sends,
the duties and the Sent copies after it parse nothing, and a worker kept to
the end added its memory to the daemon's growth in those steps.  And the
daemon does not load the parser's charset guesser or HTML converter until a
mail needs them: with a parser worker, the daemon parses no mail of a large
sync, so it never does.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psutil

from inboxd import daemon
from inboxd.config import load_settings
from inboxd.sync.sink import MIN_BATCH_FOR_WORKER
from inboxd.testing.mail import make_mail
from tests.support import db_count, write_config


def _workers() -> list[int]:
    """This process's parser workers (inboxd.sync.worker children), by pid."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "inboxd.sync.worker" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:  # Gone meanwhile.
            pass
    return found


def test_run_once_ends_the_parser_worker_before_the_duties(tmp_path, dovecot, imap_user, monkeypatch):
    n = MIN_BATCH_FOR_WORKER * 3
    dovecot.append_many(imap_user, "INBOX", [
        make_mail(frm=f"C{i} <c{i}@example.cn>", subject=f"Question {i}", body=f"Question {i}.\n")
        for i in range(n)])
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}])
    during_sync: list[list[int]] = []
    at_duties: list[list[int]] = []

    class Duties(daemon.Duties):
        def run_due(self, now=None):
            at_duties.append(_workers())
            return super().run_due(now)

    monkeypatch.setattr(daemon, "Duties", Duties)
    report = daemon.run_once(load_settings(config), workers=1, progress=lambda p: during_sync.append(_workers()))
    assert report.failed == []
    assert db_count(config, "SELECT count(*) FROM message") == n
    # The sync's batches went to a worker (so the test is about one), and it was gone when the duties ran.
    assert any(during_sync), during_sync
    assert at_duties == [[]]


def _imported(*modules: str) -> list[str]:
    """Every module a fresh interpreter has after importing `modules`."""
    probe = f"import json, sys; import {', '.join(modules)}; print(json.dumps(sorted(sys.modules)))"
    return json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                     check=True, timeout=60).stdout)


def test_the_daemon_loads_no_charset_guesser_or_html_converter_until_a_mail_needs_them():
    modules = _imported("inboxd.cli.main", "inboxd.config", "inboxd.daemon", "inboxd.sync.worker")
    assert "inboxd.mail.message" in modules
    assert [m for m in modules if m.split(".")[0] in ("charset_normalizer", "html2text")] == []


def test_the_daemon_loads_jinja_only_when_a_template_is_rendered(tmp_path):
    # A first sync imported as history sends nothing: the filer's templates are
    # made, but Jinja is loaded by the first rendering.
    probe = ("import json, sys; from inboxd.outbound.templates import Templates; "
             f"t = Templates({str(tmp_path)!r}); before = 'jinja2' in sys.modules; "
             "print(json.dumps([before, t.render_string('{{ 1 + 1 }}', {}, name='x'), 'jinja2' in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(result.stdout) == [False, "2", True]
    modules = _imported("inboxd.cli.main", "inboxd.config", "inboxd.daemon", "inboxd.desk.ingest")
    assert "inboxd.outbound.templates" in modules
    assert [m for m in modules if m.split(".")[0] == "jinja2"] == []


def test_commands_by_mail_load_no_orm():
    # The end of every mailbox pass runs the commands by mail that wait (StoreSink.run_commands); the
    # daemon's store is Core only, and sqlalchemy.orm would be 5.5 MiB more for the rest of its life.
    modules = _imported("inboxd.daemon", "inboxd.desk.agentcommands", "inboxd.desk.foldercommands")
    assert "inboxd.store.mailcommands" in modules
    assert [m for m in modules if m == "sqlalchemy.orm" or m.startswith("sqlalchemy.orm.")] == []
