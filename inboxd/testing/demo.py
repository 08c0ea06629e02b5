"""A local demo: throwaway Dovecot and SMTP sink, a running daemon, real mail.

`python -m inboxd.testing.demo [--config inboxd.toml]` starts a private
Dovecot on 127.0.0.1:10993 (TLS, self-signed) and an SMTP sink on :2525, as
the repository's inboxd.toml expects, starts `inboxd run`, delivers a few
realistic customer mails in English and Chinese to the support@ and
billing@ mailboxes (replies, a mail sent to both, HTML-only, GBK and Big5,
one broken mail), waits for the daemon to file them and prints
`inboxd list`.  One mail from 2025 is in the support mailbox before the
daemon first starts: it is history, imported as a closed ticket with its
real date and no acknowledgement.  Everything it writes lives under demo-run/ next to the config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from inboxd.testing.dovecot import Dovecot
from inboxd.testing.mail import make_mail, make_message_id
from inboxd.testing.smtp import SmtpSink

USERS = {"support": "demo-support-pw", "billing": "demo-billing-pw"}


def seed(dovecot: Dovecot) -> int:
    """Deliver the demo's mail; returns how many messages should be filed."""
    order = make_message_id("example.cn")
    dovecot.append("support", "INBOX", make_mail(
        frm="李雷 <lilei@example.cn>", subject="订单 20481 还没有发货", charset="gbk", message_id=order,
        body="您好，\n\n我在 11 月 18 日下的订单 20481 到现在还没有发货，请帮忙查一下。\n\n谢谢！\n李雷\n"))
    dovecot.append("support", "INBOX", make_mail(
        frm="Emma Schmidt <emma@example.de>", subject="Cannot reset my password",
        body="Hi,\n\nthe reset link in your mail says it expired, even when I click it at once.\n\nEmma\n"))
    dovecot.append("support", "INBOX", make_mail(
        frm="李雷 <lilei@example.cn>", subject="回复: 订单 20481 还没有发货", charset="gbk",
        in_reply_to=order, references=[order],
        body="补充一下：收货地址是上海市浦东新区。\n\n> 我在 11 月 18 日下的订单 20481 到现在还没有发货\n"))
    both = make_mail(frm="Carlos Ruiz <carlos@example.es>", to=["support@example.com", "billing@example.com"],
                     subject="Charged twice for order 7731",
                     body="Hello, my card was charged twice for order 7731. Please refund one charge.\n")
    dovecot.append("support", "INBOX", both)
    dovecot.append("billing", "INBOX", both)
    dovecot.append("billing", "INBOX", make_mail(
        frm="陳大文 <chan@example.hk>", to="billing@example.com", subject="發票抬頭需要更改", charset="big5",
        body="你好，\n\n請把發票抬頭改為「大文貿易有限公司」。\n\n陳大文\n"))
    dovecot.append("billing", "INBOX", make_mail(
        frm="Priya Natarajan <priya@example.in>", to="billing@example.com", subject="Invoice for October",
        body=None, html="<p>Hello,</p><p>could you send me the <b>invoice for October</b> as a PDF?</p>"))
    dovecot.append("billing", "INBOX", b"this is not a mail, just bytes that arrived broken\r\n")
    return 6


def _wait_for_first_sync(inboxd: list[str], env: dict[str, str]) -> None:
    """Until every folder has had its first sync (and so its history cut-off)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run([*inboxd, "status", "--json"], env=env, capture_output=True, text=True)
        if out.stdout.strip():
            folders = [f for mb in json.loads(out.stdout)["mailboxes"] for f in mb["folders"]]
            if folders and all(f["last_sync"] for f in folders):
                return
        time.sleep(0.3)
    raise SystemExit("demo: the daemon did not finish its first sync; see demo-run/daemon.log")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="inboxd.toml")
    ap.add_argument("--keep-running", action="store_true", help="leave the servers and daemon up until Ctrl-C")
    args = ap.parse_args()
    config = Path(args.config).resolve()
    run_dir = config.parent / "demo-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(mode=0o711)

    # Dovecot's unprivileged processes must reach its directory, and the
    # checkout may sit under a private home: the instance lives in /tmp, and
    # only its certificate is copied to where inboxd.toml looks for it.
    dovecot_root = Path(tempfile.mkdtemp(prefix="inboxd-demo-"))
    dovecot_root.chmod(0o711)
    dovecot = Dovecot(dovecot_root / "dovecot")
    dovecot.port, dovecot.ssl_port = 10143, 10993
    sink = SmtpSink(port=2525)
    env = dict(os.environ, INBOXD_SUPPORT_PASSWORD=USERS["support"], INBOXD_BILLING_PASSWORD=USERS["billing"])
    inboxd = [sys.executable, "-m", "inboxd", "--config", str(config)]
    daemon = None
    try:
        dovecot.start()
        cert = run_dir / "dovecot" / "tls" / "cert.pem"
        cert.parent.mkdir(parents=True)
        shutil.copyfile(dovecot.ca_file, cert)
        sink.start()
        for user, password in USERS.items():
            dovecot.add_user(user, password)
        print(f"demo: Dovecot on {dovecot.host}:{dovecot.ssl_port} (TLS), SMTP sink on {sink.host}:{sink.port}")
        # Mail that was there before inboxd: history, not new work.
        dovecot.append("support", "INBOX", make_mail(
            frm="Old Customer <old@example.org>", subject="Question from last year",
            date=datetime(2025, 6, 2, 9, 30, tzinfo=UTC), body="Hello, is the shop open on Sundays?\n"),
            when=datetime(2025, 6, 2, 9, 30, tzinfo=UTC))
        log = open(run_dir / "daemon.log", "ab")
        daemon = subprocess.Popen([*inboxd, "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        _wait_for_first_sync(inboxd, env)
        expected = seed(dovecot) + 1
        print(f"demo: delivered mail; the daemon's log is {run_dir / 'daemon.log'}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run([*inboxd, "list", "--json"], env=env, capture_output=True, text=True)
            if out.returncode == 0 and sum(t["message_count"] for t in json.loads(out.stdout)) >= expected:
                break
            time.sleep(0.5)
        else:
            raise SystemExit("demo: the daemon did not file the mail in time; see demo-run/daemon.log")
        # Five new tickets (the sixth message is a reply), so five acknowledgements.
        deadline = time.monotonic() + 30
        while True:
            # The scheduler may also mail the supervisors (a digest, a weekly report).
            acks = [e for e in sink.envelopes if e.message()["Auto-Submitted"] == "auto-replied"]
            if len(acks) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        print(f"demo: the SMTP sink received {len(acks)} acknowledgement(s), e.g.:")
        first = acks[0].message()
        print(f"    To: {first['To']}\n    Subject: {first['Subject']}")
        print("\n$ inboxd list")
        subprocess.run([*inboxd, "list"], env=env)
        print("\n$ inboxd list --status closed    # history: imported with its real date, never acknowledged")
        subprocess.run([*inboxd, "list", "--status", "closed"], env=env)
        print("\n$ inboxd quarantine list")
        subprocess.run([*inboxd, "quarantine", "list"], env=env)
        if args.keep_running:
            print("\ndemo: running; try `inboxd show T-1000` in another shell (with the same env). Ctrl-C stops.")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        if daemon is not None and daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=30)
        sink.stop()
        dovecot.stop()
        shutil.rmtree(dovecot_root, ignore_errors=True)


if __name__ == "__main__":
    main()
