"""待确认: the pure decision on a customer's reply to a solved ticket (inboxd.desk.confirm), and [confirm] errors.

Each case was checked by hand: would a support agent reading the reply close
the ticket?  Negations, complaints, new requests and questions win over a
thanks; a long mail is read by a person.  No server, no clock.
"""

from __future__ import annotations

import pytest

from inboxd.config import ConfigError
from inboxd.desk.confirm import ConfirmSettings, decide, parse_confirm

CLOSES = [
    # zh-Hans
    ("问题已经解决了，谢谢！", "问题已经解决了"),
    ("已解决", "已解决"),
    ("好的谢谢", "好的谢谢"),
    ("好的，谢谢！", "好的谢谢"),
    ("可以了", "可以了"),
    ("收到，谢谢", "收到谢谢"),
    ("没问题了", "没问题了"),
    ("谢谢！", "谢谢"),
    ("您好：\n问题已经解决了，谢谢！\n张三", "问题已经解决了"),    # greeting and name set aside
    ("能用了，辛苦了", "能用了"),
    # zh-Hant
    ("問題已經解決了，謝謝", "問題已經解決了"),
    ("已解決", "已解決"),
    ("多謝，已經可以用了", "可以用了"),
    ("恢復正常了，感謝！", "恢復正常"),
    # en
    ("Thanks, that fixed it", "thanks that fixed it"),
    ("it works now", "it works now"),
    ("Resolved, thank you!", "resolved thank you"),
    ("All good :)", "all good"),
    ("THANK YOU SO MUCH!", "thank you"),
    ("Hi Alice,\n\nThanks, that fixed it.\n\nBest regards,\nJohn", "thanks that fixed it"),
    ("Perfect, you can close the ticket.", "close the ticket"),
    ("ＯＫ", "ok"),                                              # full-width letters
]

REOPENS = [
    # Negations and complaints win over a thanks.
    ("还是不行", "还是不行"),
    ("没有解决", "没有解决"),
    ("谢谢，但是还是不行", "还是不行"),
    ("谢谢。不过打印机还是报错", "还是"),
    ("還是不行，謝謝", "還是不行"),
    ("not fixed", "not"),
    ("Thanks, but it still fails", "still"),
    ("It doesn't work", "doesn't"),
    ("Thanks, it doesnt work", "doesnt"),                       # no apostrophe
    ("No, that didn’t help", "didn't"),                        # typographic apostrophe
    # New requests.
    ("谢谢，麻烦再帮我看一下另一个订单", "麻烦"),
    ("Thanks. Could you also check my other account", "also"),
    ("谢谢，我明天再试试", "再试"),
    # A hope or a wish is not yet a confirmation.
    ("谢谢，希望这次可以了", "希望"),
    ("Thanks, I will try it tomorrow", "try"),
    ("Oh thanks. Having the function would be great.", "would"),
    # Questions.
    ("好了吗", "asks a question"),
    ("问题解决了吗？", "asks a question"),
    ("谢谢，这个怎么设置", "asks a question"),
    ("Thanks! Is it fixed for everyone?", "asks a question"),
    ("已經解決了嗎", "asks a question"),
    # Too long to be only a thanks.
    ("Great, thanks a lot for your help. The invoice is correct now and the payment went through "
     "without any trouble at all.", "too long"),
    # Nothing that confirms.
    ("", "no new text"),
    ("我把日志发给你", "no confirmation phrase"),
    ("See the log below", "no confirmation phrase"),
]


@pytest.mark.parametrize("text, phrase", CLOSES)
def test_a_short_confirmation_closes_and_names_its_phrase(text, phrase):
    decision = decide(text)
    assert decision.close, decision
    assert decision.phrase == phrase
    assert decision.detail() == {"decision": "close", "phrase": phrase, "reason": decision.reason}


@pytest.mark.parametrize("text, why", REOPENS)
def test_anything_else_reopens_and_says_why(text, why):
    decision = decide(text)
    assert not decision.close, decision
    assert why in decision.reason
    assert decision.detail()["decision"] == "reopen"


def test_an_attachment_is_never_only_a_thanks():
    assert decide("谢谢", attachments=1).reason == "the reply carries attachments"


def test_admin_phrases_add_to_the_defaults_or_replace_them():
    added = parse_confirm({"phrases": ["OK了", "Cheers mate"]}, file_name="inboxd.toml")
    assert decide("ok了！", added).phrase == "OK了"
    assert decide("Cheers mate", added).close
    assert decide("谢谢", added).close
    only = parse_confirm({"phrases": ["結案"], "defaults": False}, file_name="inboxd.toml")
    assert decide("結案", only).close
    assert decide("谢谢", only).reason == "no confirmation phrase"
    # A shorter limit makes a longer thanks a mail for a person.
    short = ConfirmSettings(max_length=5)
    assert decide("问题已经解决了，谢谢！", short).reason.startswith("too long")


@pytest.mark.parametrize("raw, message", [
    ({"phrases": "thanks"}, "inboxd.toml: confirm.phrases:"),
    ({"phrases": ["！！"]}, "inboxd.toml: confirm.phrases[0]: must contain a letter"),
    ({"defaults": False}, "inboxd.toml: confirm.defaults: false leaves no phrase"),
    ({"max_length": 0}, "inboxd.toml: confirm.max_length:"),
    ({"phrase": ["x"]}, "phrase"),
])
def test_confirm_errors_are_one_line(raw, message):
    with pytest.raises(ConfigError) as caught:
        parse_confirm(raw, file_name="inboxd.toml")
    assert str(caught.value).startswith(message) or message in str(caught.value)
    assert "\n" not in str(caught.value)


# -- the decide stage: a reply to a solved ticket, with the in-memory store of tests/test_decide.py ----------


@pytest.fixture(scope="module")
def desks(tmp_path_factory):
    import tomllib

    from inboxd.config import parse_settings
    from inboxd.desk.decide import Desk
    from tests.test_decide import CONFIG

    def make(extra: str):
        text = CONFIG.replace('address = "support@example.com"\n', f'address = "support@example.com"\n{extra}')
        settings = parse_settings(tomllib.loads(text), tmp_path_factory.mktemp("confirm") / "inboxd.toml")
        return Desk.of(settings, settings.policies)

    return {"on": make(""), "off": make("confirm_closes = false\n")}


@pytest.mark.parametrize("status, text, switch, after, confirm", [
    ("solved", "问题已经解决了，谢谢！", "on", "closed", {"decision": "close", "phrase": "问题已经解决了"}),
    ("solved", "还是不行", "on", "open", {"decision": "reopen"}),
    ("solved", "Thanks, that fixed it", "off", "open", {"decision": "reopen"}),
    ("pending", "问题已经解决了，谢谢！", "on", "open", None),     # only a solved ticket waits for confirmation
    ("open", "Thanks, that fixed it", "on", "open", None),
])
def test_decide_closes_a_solved_ticket_on_confirmation(desks, status, text, switch, after, confirm):
    from datetime import UTC, datetime

    from inboxd.desk.decide import Incoming, decide as decide_message
    from inboxd.mail.message import parse_message
    from tests.test_decide import Store, mail, ticket

    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    store = Store()
    store.tickets[1] = ticket(1, status, assignee="alice")
    raw = mail("Re: Printer on fire", irt="m1@customer.example", body=f"{text}\n\n> Please restart it.\n")
    msg = parse_message(raw)
    d = decide_message(Incoming(msg, raw, "support", "INBOX", at=now, key=msg.message_id), store, desks[switch], now)
    assert (d.ticket.pk, d.ticket.status_before, d.ticket.status_after) == (1, status, after)
    if confirm is None:
        assert d.confirm is None
    else:
        assert {k: v for k, v in d.confirm.detail().items() if k in confirm} == confirm
        assert any(r.startswith("confirmed:" if after == "closed" else "not a confirmation:") for r in d.reasons)
