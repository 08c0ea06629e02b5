"""The trust decision of commands by mail, on Authentication-Results headers as real servers write them.

The header shapes follow RFC 8601's examples and the providers' public
documentation: Gmail (mx.google.com), Fastmail (mxN.messagingengine.com,
with policy.* properties), Postfix with OpenDKIM and OpenDMARC (one header
per milter, same authserv-id), and Microsoft 365 (no authserv-id at all).
"""

from __future__ import annotations

import pytest

from inboxd.desk.authresults import check, headers_of
from inboxd.testing.mail import make_mail

GMAIL = ("mx.google.com; dkim=pass header.i=@example.com header.s=20230601 header.b=AbCdEf12; "
         "spf=pass (google.com: domain of alice@example.com designates 192.0.2.1 as permitted sender) "
         "smtp.mailfrom=alice@example.com; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com")
FASTMAIL = ("mx6.messagingengine.com; arc=none (no signatures found); dkim=pass (2048-bit rsa key sha256) "
            "header.d=example.com header.i=@example.com header.b=abc header.a=rsa-sha256 header.s=fm1 x-bits=2048; "
            "dmarc=pass policy.published-domain-policy=none policy.applied-disposition=none "
            "policy.evaluated-disposition=none (p=none,d=none,d.eval=none) policy.policy-from=p "
            "header.from=example.com; iprev=pass smtp.remote-ip=192.0.2.1 (mail.example.com); "
            "spf=pass smtp.mailfrom=alice@example.com smtp.helo=mail.example.com")
OPENDKIM = ('mail.example.org; dkim=pass (2048-bit key; unprotected) header.d=example.com '
            'header.i=@example.com header.b="AbCdEf12"; dkim-atps=neutral')
OPENDMARC = "mail.example.org; dmarc=pass (p=reject dis=none) header.from=example.com"
POLICYD_SPF = "mail.example.org; spf=pass (mailfrom) smtp.mailfrom=alice@example.com"
M365 = ("spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.com; dkim=pass (signature was verified) "
        "header.d=example.com;dmarc=pass action=none header.from=example.com;compauth=pass reason=100")


@pytest.mark.parametrize("values,ids,trusted", [
    ([GMAIL], ["mx.google.com"], True),
    ([FASTMAIL], ["mx6.messagingengine.com", "mx1.messagingengine.com"], True),
    ([OPENDKIM], ["mail.example.org"], True),
    ([OPENDMARC], ["mail.example.org"], True),
    ([POLICYD_SPF], ["mail.example.org"], True),
    # Postfix with two milters: one header each, same authserv-id; either pass will do.
    (["mail.example.org; dkim=fail header.d=example.com", OPENDMARC], ["mail.example.org"], True),
    # Case does not matter in the authserv-id (RFC 8601: it is a domain name).
    ([GMAIL.replace("mx.google.com;", "MX.Google.COM;")], ["mx.google.com"], True),
    # A subdomain signature aligns (relaxed): mail.example.com signs for example.com's From.
    (["mx.example.net; dkim=pass header.d=mail.example.com"], ["mx.example.net"], True),
])
def test_a_pass_from_the_trusted_server_is_trusted(values, ids, trusted):
    verdict = check(values, "alice@example.com", ids)
    assert verdict.trusted is trusted, verdict.reason


@pytest.mark.parametrize("values,reason", [
    ([], "no Authentication-Results from mx.google.com"),
    # Anyone can write a header with another server's name in it.
    ([GMAIL.replace("mx.google.com;", "mx.evil.example;")], "headers from other servers are not trusted"),
    # Microsoft 365 names no authserv-id, so its header cannot be told from a forged one.
    ([M365], "no Authentication-Results from mx.google.com"),
    # A pass for somebody else's domain.
    (["mx.google.com; dkim=pass header.d=evil.example; spf=pass smtp.mailfrom=x@evil.example"], "show no pass"),
    # Alignment is not a suffix match: notexample.com is not example.com.
    (["mx.google.com; dkim=pass header.d=notexample.com"], "show no pass"),
    # A public suffix alone never aligns.
    (["mx.google.com; dkim=pass header.d=com"], "show no pass"),
    (["mx.google.com; spf=softfail smtp.mailfrom=alice@example.com; dkim=none"], "show no pass"),
    (["mx.google.com; none"], "show no pass"),
    # DMARC's fail is the domain owner's word: it wins over an SPF pass.
    (["mx.google.com; spf=pass smtp.mailfrom=alice@example.com; dmarc=fail header.from=example.com"],
     "dmarc=fail"),
    # A header the parser cannot read counts for nothing.
    (["mx.google.com; dkim=pass header.d=example.com; ((("], "no Authentication-Results"),
])
def test_anything_else_is_not_trusted_and_says_why(values, reason):
    verdict = check(values, "alice@example.com", ["mx.google.com"])
    assert not verdict.trusted
    assert reason in verdict.reason


def test_headers_are_read_from_the_raw_mail_top_first():
    raw = (f"Authentication-Results: {GMAIL}\r\n"
           "Authentication-Results: mx.evil.example;\r\n dkim=pass header.d=example.com\r\n").encode()
    raw += make_mail(frm="alice@example.com")
    values = headers_of(raw)
    assert values[0] == GMAIL
    assert values[1] == "mx.evil.example; dkim=pass header.d=example.com"
    assert check(values, "alice@example.com", ["mx.google.com"]).trusted
    assert not check(values[1:], "alice@example.com", ["mx.google.com"]).trusted
