"""Benchmark: inboxd against a Python helpdesk peer, django-helpdesk 2.6, on the same corpus in one run.

Both read the same 2,000 mails (bench/ingest.py's corpus: mixed sizes,
20 % Chinese in GBK, Big5 or UTF-8, 5 % with a 200 KB attachment, 20 %
replies) from their own user of one private Dovecot over IMAP with TLS
(certificates verified), and both send each new ticket's acknowledgement
to the same real SMTP sink (bench/smtpsink.py, aiosmtpd in its own
process).  Each runs in its own process tree, timed from fork to exit:

1. **inboxd, acks on**: `inboxd run --once` on an empty SQLite store,
   exactly bench/ingest.py's "acks on" configuration (the store's
   migrations are inside the clock).
2. **django-helpdesk, acks on**: `django-admin get_email` (its cron job)
   on a SQLite database that was migrated, and its queue created, before
   the clock starts (so the peer's set-up is *not* timed). Its queue reads
   INBOX with IMAP over TLS; Django's SMTP backend sends its
   "newticket_submitter" mail to the sink. django-helpdesk fetches one
   message at a time and deletes each one it filed, which is how it works.

It prints msgs/s for each, the mails each sink received, and inboxd's
factor over the peer.  django-helpdesk runs in a virtualenv of its own,
made on first use under ~/.cache/inboxd-bench/peer-venv (pip install
django-helpdesk==2.6.0; needs the package index).

Usage: python bench/peer.py [N]   (default 2000)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import venv
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import ACKS_ON, corpus, run_inboxd, run_tree, smtp_sink, store_counts, write_config  # noqa: E402

from inboxd.testing.dovecot import Dovecot  # noqa: E402

PEER = "django-helpdesk==2.6.0"
VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inboxd-bench" / "peer-venv"

SETTINGS = """
SECRET_KEY = "bench"
DEBUG = False
USE_TZ = True
SITE_ID = 1
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.sites", "django.contrib.messages",
    "django.contrib.humanize", "rest_framework", "helpdesk",
]
ROOT_URLCONF = "peer_urls"
HELPDESK_TEAMS_MODE_ENABLED = False
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
MEDIA_ROOT = {media!r}
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = {smtp_port}
DEFAULT_FROM_EMAIL = "support@example.com"
HELPDESK_DEFAULT_SETTINGS = {{"use_email_as_submitter": True, "email_on_ticket_assign": False,
                              "email_on_ticket_change": False}}
TEMPLATES = [{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
               "OPTIONS": {{"context_processors": ["django.contrib.auth.context_processors.auth",
                                                  "django.contrib.messages.context_processors.messages",
                                                  "django.template.context_processors.request"]}}}}]
LOGGING = {{"version": 1, "disable_existing_loggers": False, "root": {{"level": "ERROR"}}}}
"""

URLS = """
from django.urls import include, path
urlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]
"""

QUEUE = """
from helpdesk.models import Queue
Queue.objects.create(
    title="Support", slug="support", email_address="support@example.com", allow_email_submission=True,
    email_box_type="imap", email_box_host={host!r}, email_box_port={port}, email_box_ssl=True,
    email_box_user="peer", email_box_pass="secret", email_box_imap_folder="INBOX", email_box_interval=0,
    new_ticket_cc="", updated_ticket_cc="",
)
"""


def peer_python() -> Path:
    """The peer's interpreter, in a virtualenv of its own (made once)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"installing {PEER} into {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PEER], check=True)
    return python


def main(n: int) -> None:
    python = peer_python()
    with tempfile.TemporaryDirectory(prefix="inboxd-peer-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        tmp.chmod(0o711)
        dovecot = stack.enter_context(Dovecot(tmp / "dovecot"))
        sink_port, sink_log = stack.enter_context(smtp_sink(tmp))
        mails = corpus(n)
        for user in ("bench", "peer"):
            dovecot.add_user(user, "secret")
            dovecot.append_many(user, "INBOX", mails)
        print(f"N={n}  {sum(map(len, mails)) / 2**20:.1f} MiB of mail, in one Dovecot, one copy per helpdesk")
        del mails

        # inboxd, exactly as bench/ingest.py's "acks on".
        url = f"sqlite:///{tmp / 'inboxd.db'}"
        config = write_config(tmp, dovecot, url=url)
        with config.open("a") as fh:
            fh.write(ACKS_ON.format(port=sink_port))
        before = len(sink_log.read_text().splitlines())
        ours, peaks = run_inboxd(config)
        counts = store_counts(url)
        ours_sent = len(sink_log.read_text().splitlines()) - before

        # django-helpdesk: set up (not timed), then its cron job (timed).
        project = tmp / "peer"
        project.mkdir()
        (project / "peer_settings.py").write_text(SETTINGS.format(
            db=str(tmp / "peer.db"), media=str(tmp / "media"), smtp_port=sink_port))
        (project / "peer_urls.py").write_text(URLS)
        env = dict(os.environ, PYTHONPATH=str(project), DJANGO_SETTINGS_MODULE="peer_settings",
                   SSL_CERT_FILE=str(dovecot.ca_file))
        subprocess.run([str(python), "-m", "django", "migrate", "-v", "0"], env=env, check=True)
        subprocess.run([str(python), "-m", "django", "shell", "-v", "0", "-c",
                        textwrap.dedent(QUEUE.format(host=dovecot.host, port=dovecot.ssl_port))],
                       env=env, check=True)
        before = len(sink_log.read_text().splitlines())
        old_env = os.environ.copy()
        os.environ.update(env)
        try:
            theirs, peer_peaks = run_tree([str(python), "-m", "django", "get_email", "--quiet"])
        finally:
            os.environ.clear()
            os.environ.update(old_env)
        peer_sent = len(sink_log.read_text().splitlines()) - before
        peer_tickets = subprocess.run(
            [str(python), "-m", "django", "shell", "-v", "0", "-c",
             "from helpdesk.models import Ticket, FollowUp; print(Ticket.objects.count(), FollowUp.objects.count())"],
            env=env, check=True, capture_output=True, text=True).stdout.split()

        print(f"  inboxd            {ours:7.2f} s  {n / ours:7.0f} msgs/s  tickets={counts['tickets']}"
              f" acks queued={counts['acks']} received by the sink={ours_sent}"
              f"  peak RSS of the tree {peaks['tree_rss']:.1f} MiB")
        print(f"  django-helpdesk   {theirs:7.2f} s  {n / theirs:7.0f} msgs/s  tickets={peer_tickets[0]}"
              f" follow-ups={peer_tickets[1]} mails received by the sink={peer_sent}"
              f"  peak RSS of the tree {peer_peaks['tree_rss']:.1f} MiB")
        print(f"  inboxd / django-helpdesk: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
