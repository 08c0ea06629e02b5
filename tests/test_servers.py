"""The test servers and mail factories behave like the real things inboxd meets."""

from __future__ import annotations

import email
import email.policy
import imaplib
import shutil
import smtplib
import socket
import ssl
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from inboxd.testing import free_port
from inboxd.testing import dovecot as dovecot_module
from inboxd.testing.dovecot import Dovecot, DovecotError
from inboxd.testing.mail import make_mail
from inboxd.testing.smtp import SmtpSink


def _login(server: Dovecot, user: str, tls: str = "none") -> imaplib.IMAP4:
    """Log in with hostname checking and certificate verification on, trusting only ca_file."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    if tls == "tls":
        imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(server.host, server.ssl_port, ssl_context=context, timeout=10)
    else:
        imap = imaplib.IMAP4(server.host, server.port, timeout=10)
        if tls == "starttls":
            imap.starttls(context)
    imap.login(user, "secret")
    return imap


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text` (zombies have none)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


# -- Dovecot -------------------------------------------------------------


def test_append_returns_increasing_uids_and_keeps_flags(dovecot: Dovecot, imap_user: str) -> None:
    uids = [
        dovecot.append(imap_user, "INBOX", make_mail(subject="first")),
        dovecot.append(imap_user, "INBOX", make_mail(subject="second"), flags=("\\Seen",)),
        dovecot.append(imap_user, "INBOX", make_mail(subject="third"),
                       when=datetime(2024, 5, 1, 8, 30, tzinfo=timezone.utc)),
    ]

    assert dovecot.fetch_flags(imap_user, "Sent") == {}
    assert uids == sorted(uids) and len(set(uids)) == 3
    assert dovecot.message_count(imap_user, "INBOX") == 3
    assert dovecot.fetch_flags(imap_user, "INBOX") == {uids[0]: (), uids[1]: ("\\Seen",), uids[2]: ()}


def test_append_many_stores_every_message_across_batches(dovecot: Dovecot, imap_user: str) -> None:
    dovecot.append_many(imap_user, "INBOX", (make_mail(subject=f"bulk {i}") for i in range(1203)))

    assert dovecot.message_count(imap_user, "INBOX") == 1203
    assert sorted(dovecot.fetch_flags(imap_user, "INBOX")) == list(range(1, 1204))


def test_appended_bytes_come_back_unchanged_and_unseen(dovecot: Dovecot, imap_user: str) -> None:
    raw = make_mail(subject="无法登录", body="你好\r\n", charset="gbk")
    uid = dovecot.append(imap_user, "INBOX", raw)

    imap = _login(dovecot, imap_user)
    imap.select("INBOX")
    typ, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
    imap.logout()

    assert typ == "OK" and data[0][1] == raw
    assert dovecot.fetch_flags(imap_user, "INBOX") == {uid: ()}


@pytest.mark.parametrize("tls", ["none", "starttls", "tls"])
def test_login_works_on_both_ports_with_verified_tls(dovecot: Dovecot, imap_user: str, tls: str) -> None:
    imap = _login(dovecot, imap_user, tls)
    try:
        assert imap.state == "AUTH"
        if tls != "none":
            assert imap.sock.getpeercert()["subjectAltName"] == (("IP Address", "127.0.0.1"),)
    finally:
        imap.logout()


def test_tls_is_refused_without_the_ca_file(dovecot: Dovecot) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(dovecot.host, dovecot.ssl_port, ssl_context=ssl.create_default_context(), timeout=10)


def test_capabilities_include_idle_uidplus_condstore_move(dovecot: Dovecot, imap_user: str) -> None:
    imap = _login(dovecot, imap_user)
    # imaplib keeps the pre-login list; the extensions are announced after login.
    typ, data = imap.capability()
    imap.logout()
    capabilities = set(data[0].decode().split())

    assert {"IDLE", "UIDPLUS", "CONDSTORE", "MOVE"} <= capabilities


def test_sent_folder_exists_with_special_use(dovecot: Dovecot, imap_user: str) -> None:
    imap = _login(dovecot, imap_user)
    typ, data = imap.list()
    imap.logout()

    sent = [line for line in data if line.endswith(b' "Sent"') or line.endswith(b" Sent")]
    assert typ == "OK" and len(sent) == 1 and b"\\Sent" in sent[0]


def test_users_added_while_running_can_log_in_at_once(dovecot: Dovecot, mail_user_factory) -> None:
    # Dovecot stats a passwd-file at most once a second; users added within
    # the same second must still be known.
    for password in ("one", "two", "three"):
        user = mail_user_factory(password)
        imap = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
        assert imap.login(user, password)[0] == "OK"
        imap.logout()


def test_wrong_password_is_rejected(dovecot: Dovecot, imap_user: str) -> None:
    imap = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap.login(imap_user, "wrong")
    imap.shutdown()


def test_recreated_folder_gets_new_uidvalidity(dovecot: Dovecot, imap_user: str) -> None:
    dovecot.create_folder(imap_user, "Billing")
    dovecot.append(imap_user, "Billing", make_mail())
    before = dovecot.uidvalidity(imap_user, "Billing")

    dovecot.delete_folder(imap_user, "Billing")
    dovecot.create_folder(imap_user, "Billing")

    assert dovecot.uidvalidity(imap_user, "Billing") != before
    assert dovecot.message_count(imap_user, "Billing") == 0


def test_append_to_missing_folder_fails_clearly(dovecot: Dovecot, imap_user: str) -> None:
    with pytest.raises(DovecotError, match="TRYCREATE"):
        dovecot.append(imap_user, "Nowhere", make_mail())


def test_restart_keeps_ports_and_mail(private_dovecot: Dovecot) -> None:
    server = private_dovecot
    server.add_user("alice")
    uid = server.append("alice", "INBOX", make_mail())
    ports, uidvalidity = (server.port, server.ssl_port), server.uidvalidity("alice", "INBOX")

    server.restart()

    assert server.running
    assert (server.port, server.ssl_port) == ports
    assert server.uidvalidity("alice", "INBOX") == uidvalidity
    assert server.fetch_flags("alice", "INBOX") == {uid: ()}
    _login(server, "alice", "tls").logout()


def test_kill_drops_connections_and_start_recovers(private_dovecot: Dovecot) -> None:
    server = private_dovecot
    server.add_user("bob")
    server.append("bob", "INBOX", make_mail())
    connected = _login(server, "bob")
    connected.select("INBOX")

    server.kill()

    assert not server.running
    assert _processes_mentioning(f"dovecot-inboxd-test-{server.port}/") == []
    assert _processes_mentioning(str(server.root)) == []
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        connected.noop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2)
    server.start()
    assert server.message_count("bob", "INBOX") == 1


def test_start_picks_other_ports_when_one_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    squatter = socket.create_server(("127.0.0.1", 0))
    taken = squatter.getsockname()[1]
    real_choice = dovecot_module._two_free_ports
    choices = iter([(taken, free_port())])
    monkeypatch.setattr(dovecot_module, "_two_free_ports", lambda host: next(choices, None) or real_choice(host))
    root = Path(tempfile.mkdtemp(prefix="inboxd-dovecot-"))
    try:
        with Dovecot(root) as server:
            assert server.running and taken not in (server.port, server.ssl_port)
            assert "Address already in use" in (root / "log" / "stdio.log").read_text()
    finally:
        squatter.close()
        shutil.rmtree(root)


def test_stop_is_idempotent(private_dovecot: Dovecot) -> None:
    private_dovecot.stop()
    private_dovecot.stop()
    assert not private_dovecot.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((private_dovecot.host, private_dovecot.port), timeout=2)


# -- SMTP sink -----------------------------------------------------------


def _send(sink: SmtpSink, raw: bytes, rcpt: str = "lilei@example.cn") -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        client.sendmail("support@example.com", [rcpt], raw)


def test_sink_records_envelope_and_message(smtp_sink: SmtpSink) -> None:
    raw = make_mail(frm="Support <support@example.com>", to="Li Lei <lilei@example.cn>", subject="回复：无法登录")

    _send(smtp_sink, raw)

    [envelope] = smtp_sink.wait_for(1)
    assert envelope.mail_from == "support@example.com"
    assert envelope.rcpt_tos == ["lilei@example.cn"]
    assert envelope.message()["Subject"] == "回复：无法登录"
    assert envelope.data.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("code", [451, 550])
def test_fail_next_answers_data_with_the_code_once(smtp_sink: SmtpSink, code: int) -> None:
    smtp_sink.fail_next(code, "Try again later" if code == 451 else "Mailbox unavailable")

    with pytest.raises(smtplib.SMTPDataError) as failure:
        _send(smtp_sink, make_mail())
    assert failure.value.smtp_code == code
    assert smtp_sink.envelopes == []

    _send(smtp_sink, make_mail())
    assert len(smtp_sink.wait_for(1)) == 1


def test_fail_always_until_cleared(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_always(421, "Service shutting down")
    for _ in range(2):
        with pytest.raises(smtplib.SMTPDataError) as failure:
            _send(smtp_sink, make_mail())
        assert failure.value.smtp_code == 421

    smtp_sink.fail_always(None)
    _send(smtp_sink, make_mail())
    assert len(smtp_sink.wait_for(1)) == 1


def test_wait_for_times_out_with_assertion(smtp_sink: SmtpSink) -> None:
    with pytest.raises(AssertionError, match="expected 1 mail"):
        smtp_sink.wait_for(1, timeout=0.2)


def test_sink_restart_keeps_port_and_envelopes() -> None:
    with SmtpSink(port=free_port()) as sink:
        port = sink.port
        _send(sink, make_mail())
        sink.stop()
        with pytest.raises(OSError):
            _send(sink, make_mail())
        sink.start()
        assert sink.port == port
        _send(sink, make_mail())
        assert len(sink.wait_for(2)) == 2


# -- make_mail -----------------------------------------------------------

_SAMPLES = {
    "utf-8": ("李雷", "无法登录我的账户 – ünïcode", "您好，\n\n我昨天开始无法登录。\n"),
    "gbk": ("李雷", "无法登录我的账户，请帮忙看看这个问题，谢谢！" * 2, "您好，\n\n我昨天开始无法登录。\n"),
    "big5": ("李雷", "無法登入我的帳戶，請幫忙看看這個問題，謝謝！" * 2, "您好，\n\n我昨天開始無法登入。\n"),
    "iso-2022-jp": ("山田太郎", "ログインできません。至急ご対応をお願いいたします。", "お世話になっております。\n\nログインできません。\n"),
}


@pytest.mark.parametrize("charset", list(_SAMPLES))
def test_make_mail_round_trips_through_the_stdlib_parser(charset: str) -> None:
    name, subject, body = _SAMPLES[charset]
    raw = make_mail(frm=f"{name} <customer@example.cn>", subject=subject, body=body, charset=charset)

    parsed = email.message_from_bytes(raw, policy=email.policy.default)

    assert f"=?{charset}?b?".encode() in raw  # Encoded in the charset asked for, not UTF-8.
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == name
    assert parsed.get_content_charset() == charset
    assert parsed.get_content().replace("\r\n", "\n") == body
    assert raw.count(b"\r\n") == raw.count(b"\n")


def test_make_mail_structure_threading_and_headers() -> None:
    raw = make_mail(
        to=["support@example.com", "billing@example.com"],
        body="See attached.\n",
        html="<p>See attached.</p>",
        message_id="<reply-2@example.cn>",
        in_reply_to="<ack-1@example.com>",
        references=["<orig-1@example.cn>", "<ack-1@example.com>"],
        headers={"Auto-Submitted": "auto-replied", "Date": None},
        attachments=[("发票.pdf", b"%PDF-1.4 fake", "application/pdf")],
    )

    parsed = email.message_from_bytes(raw, policy=email.policy.default)

    assert parsed.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf"]
    [attachment] = parsed.iter_attachments()
    assert attachment.get_filename() == "发票.pdf" and attachment.get_content() == b"%PDF-1.4 fake"
    assert parsed["Message-ID"] == "<reply-2@example.cn>"
    assert parsed["In-Reply-To"] == "<ack-1@example.com>"
    assert parsed["References"] == "<orig-1@example.cn> <ack-1@example.com>"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["support@example.com", "billing@example.com"]
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert "Date" not in parsed
    assert raw.count(b"MIME-Version") == 1


def test_make_mail_html_only_and_unique_ids() -> None:
    first = email.message_from_bytes(make_mail(body=None, html="<b>Hi</b>"), policy=email.policy.default)
    second = email.message_from_bytes(make_mail(), policy=email.policy.default)

    assert first.get_content_type() == "text/html" and first.get_content() == "<b>Hi</b>"
    assert first["Message-ID"] != second["Message-ID"]
    assert first["Message-ID"].endswith("@example.cn>")
