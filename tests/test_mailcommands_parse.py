"""The parser of commands by mail (pure): which leading lines are commands, what they mean, the rest."""

from __future__ import annotations

import pytest

from inboxd.desk.mailcommands import Command, call, parse, plan


@pytest.mark.parametrize("line,name,arg", [
    ("#close", "close", ""), ("#Close", "close", ""), ("#关闭", "close", ""), ("#關閉", "close", ""),
    ("＃关闭", "close", ""),
    ("#pending", "pending", ""), ("#待定", "pending", ""),
    ("#solve", "solve", ""), ("#解决", "solve", ""),
    ("#reopen", "reopen", ""), ("#重开", "reopen", ""),
    ("#assign bob", "assign", "bob"), ("#分配 bob", "assign", "bob"), ("#分配bob", "assign", "bob"),
    ("#分配　bob", "assign", "bob"),
    ("#take", "take", ""), ("#接手", "take", ""),
    ("#tag vip", "tag", "vip"), ("#标签 vip", "tag", "vip"), ("#标签vip", "tag", "vip"),
    ("#untag vip", "untag", "vip"), ("#删除标签 vip", "untag", "vip"),
    ("#priority urgent", "priority", "urgent"), ("#优先级 紧急", "priority", "urgent"),
    ("#优先级高", "priority", "high"), ("#priority LOW", "priority", "low"),
    ("#escalate angry customer", "escalate", "angry customer"), ("#升级 客户很生气", "escalate", "客户很生气"),
    ("#macro 重置密码", "macro", "重置密码"), ("#宏 重置密码", "macro", "重置密码"),
])
def test_each_command_in_english_and_chinese(line, name, arg):
    parsed = parse(f"{line}\n\nHello,\nit works now.\n")
    assert parsed.commands == (Command(name, arg, line),)
    assert parsed.errors == ()
    assert parsed.rest == "Hello,\nit works now."


def test_commands_must_come_first_and_blank_lines_between_them_are_allowed():
    parsed = parse("\n#tag vip\n\n#close\nThanks!\n#assign bob\n")
    assert [c.name for c in parsed.commands] == ["tag", "close"]
    # A # line below the text is text.
    assert parsed.rest == "Thanks!\n#assign bob"
    assert parse("Hello\n#close\n").empty


def test_lines_that_are_not_command_lines():
    # "#1" and "# heading" have no command word: the text starts there.
    assert parse("#1 thing to check: the cable\n").empty
    assert parse("# Heading\n").empty
    assert parse("").empty and parse("\n\n").empty


def test_note_takes_the_rest_of_the_mail():
    parsed = parse("#take\n#note called them\nthey will call back\n#close\n")
    assert [c.name for c in parsed.commands] == ["take", "note"]
    assert [c.name for c in parsed.actions] == ["take"]
    assert parsed.note and parsed.rest == "called them\nthey will call back\n#close"
    zh = parse("#备注\n打过电话\n")
    assert zh.note and zh.rest == "打过电话" and zh.actions == ()


@pytest.mark.parametrize("line,problem", [
    ("#frobnicate", "unknown command #frobnicate"),
    ("#删除", "unknown command #删除"),
    ("#assign", "#assign needs an agent's name"),
    ("#assign bob carol", "#assign names one agent"),
    ("#tag", "#tag needs one or more tags"),
    ("#priority someday", "unknown priority 'someday'"),
    ("#escalate", "#escalate needs a reason"),
    ("#macro", "#macro needs a macro's name"),
    ("#take bob", "#take takes no argument"),
])
def test_mistakes_are_error_entries(line, problem):
    parsed = parse(f"#tag ok\n{line}\nText\n")
    assert [c.name for c in parsed.commands] == ["tag"]
    [error] = parsed.errors
    assert error.line == line and problem in error.reason
    # One mistake and nothing runs.
    decided = plan(parsed, True, "trusted")
    assert decided.run == () and len(decided.refused) == 2


def test_an_untrusted_sender_runs_nothing():
    decided = plan(parse("#close\n#tag vip\n"), False, "no pass")
    assert decided.run == ()
    assert [r.reason for r in decided.refused] == ["not run: no pass"] * 2
    assert plan(parse("#close\n"), True, "dkim=pass").run == (Command("close", "", "#close"),)


@pytest.mark.parametrize("line,op,params", [
    ("#close", "close", {"survey": True}),
    ("#close no survey", "close", {"survey": False}),
    ("#solve", "set_status", {"status": "solved"}),
    ("#待定", "set_status", {"status": "pending"}),
    ("#assign bob", "assign", {"agent": "bob"}),
    ("#take", "take", {}),
    ("#标签 vip, 退款、急", "tag", {"tags": ["vip", "退款", "急"]}),
    ("#priority 紧急", "priority", {"priority": "urgent"}),
    ("#escalate the customer is angry", "escalate", {"to": "supervisor", "reason": "the customer is angry"}),
    ("#escalate tier2 needs a database fix", "escalate", {"to": "tier2", "reason": "needs a database fix"}),
    ("#升级 主管 客户要求退款", "escalate", {"to": "supervisor", "reason": "客户要求退款"}),
    ("#macro 重置密码", "macro_apply", {"name": "重置密码", "text": None}),
])
def test_each_command_is_one_api_operation(line, op, params):
    [command] = parse(line).commands
    assert call(command, "T-1000") == (op, {"id": "T-1000", **params})
