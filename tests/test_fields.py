"""Custom ticket fields: `[[fields]]` in the config, `inboxd set`, and `list --field`.

The config and value checks are pure and need no server; the CLI tests file
real mail from Dovecot and run the commands as an agent types them, on
both stores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inboxd.config import ConfigError
from inboxd.desk.fields import Field, FieldError, check_value, parse_fields, parse_filter
from inboxd.testing.mail import make_message_id
from tests.support import write_config
from tests.test_workflow import AGENTS, Desk, refused

KINDS = ("售后维修", "退换货", "咨询")
FIELDS = """
[[fields]]
name = "问题类型"
choices = ["售后维修", "退换货", "咨询"]

[[fields]]
name = "order"
"""
DECLARED = (Field("问题类型", KINDS), Field("order"))


# -- the config and the checks (pure) ------------------------------------------------------------

def test_fields_parse_with_chinese_names_and_optional_choices() -> None:
    raw = [{"name": "问题类型", "choices": list(KINDS)}, {"name": "order"}]
    assert parse_fields(raw, file_name="inboxd.toml") == DECLARED
    assert parse_fields(None, file_name="inboxd.toml") == ()


@pytest.mark.parametrize("raw, message", [
    ([{"name": ""}], "inboxd.toml: fields[0].name: must not be empty"),
    ([{"name": "a b"}], 'inboxd.toml: fields[0].name: must not contain spaces or "=", got "a b"'),
    ([{"name": "x"}, {"name": "x"}], 'inboxd.toml: fields[1].name: duplicate field name "x"'),
    ([{"name": "x", "choices": ["a", "a"]}], "inboxd.toml: fields[0].choices: a choice is listed twice"),
    ([{"name": "x", "choices": "a"}], 'inboxd.toml: fields[0].choices: expected a list of strings, got "a"'),
    ([{"name": "x", "required": True}], 'inboxd.toml: fields[0].required: unknown key "required"'),
    ({"name": "x"}, "inboxd.toml: fields: expected an array of tables ([[fields]]), got a table"),
])
def test_field_config_mistakes_are_one_line(raw, message) -> None:
    with pytest.raises(ConfigError) as err:
        parse_fields(raw, file_name="inboxd.toml")
    assert str(err.value) == message


def test_values_are_checked_against_choices() -> None:
    assert check_value(DECLARED, "问题类型", " 退换货 ") == "退换货"
    assert check_value(DECLARED, "order", "SO-1234") == "SO-1234"
    with pytest.raises(FieldError, match="问题类型 cannot be '退货'; choose one of: 售后维修, 退换货, 咨询"):
        check_value(DECLARED, "问题类型", "退货")
    with pytest.raises(FieldError, match="unknown field '问题'; known fields: 问题类型, order"):
        check_value(DECLARED, "问题", "咨询")
    with pytest.raises(FieldError, match="--clear"):
        check_value(DECLARED, "order", "  ")
    with pytest.raises(FieldError, match="one line"):
        check_value(DECLARED, "order", "SO-1\nSO-2")
    with pytest.raises(FieldError, match="at most 200"):
        check_value(DECLARED, "order", "x" * 201)
    with pytest.raises(FieldError, match="no \\[\\[fields\\]\\] are configured"):
        check_value((), "order", "1")


def test_list_filters_name_a_declared_field() -> None:
    assert parse_filter(DECLARED, "问题类型=咨询") == ("问题类型", "咨询")
    with pytest.raises(FieldError, match="NAME=VALUE"):
        parse_filter(DECLARED, "问题类型")
    with pytest.raises(FieldError, match="unknown field"):
        parse_filter(DECLARED, "kind=x")


# -- on the command line ---------------------------------------------------------------------------

@pytest.fixture
def desk(tmp_path: Path, dovecot, imap_user, smtp_sink) -> Desk:
    config = write_config(tmp_path, dovecot, [{"name": "support", "user": imap_user}],
                          smtp_port=smtp_sink.port, extra=AGENTS + FIELDS)
    return Desk(config, dovecot, imap_user, smtp_sink)


def _two_tickets(desk: Desk) -> tuple[str, str]:
    desk.mail(frm="Li Lei <lilei@example.cn>", subject="屏幕坏了", message_id=make_message_id())
    desk.mail(frm="Han Meimei <hanmeimei@example.cn>", subject="想退货", message_id=make_message_id())
    desk.ingest()
    first, second = sorted(t["id"] for t in desk.json(None, "list"))
    return first, second


def test_set_records_the_value_in_history_and_json(desk: Desk) -> None:
    first, second = _two_tickets(desk)
    out = desk.as_("alice", "set", first, "问题类型", "售后维修").stdout
    assert out.strip() == f"{first}: 问题类型 = 售后维修"
    desk.as_("alice", "set", first, "order", "SO-1234")
    result = desk.json("alice", "set", second, "问题类型", "退换货")
    assert (result["id"], result["action"], result["field"], result["after"]) == (second, "field", "问题类型", "退换货")
    shown = desk.show(first)
    assert shown["fields"] == {"order": "SO-1234", "问题类型": "售后维修"}
    event = next(e for e in shown["events"] if e["action"] == "field")
    assert (event["actor"], _own(event["detail"])) == ("alice", {"field": "问题类型", "before": None, "after": "售后维修"})
    # Who did it, how and from where: the store's owner ran the command as alice.
    assert event["detail"]["via"] == "cli"
    assert event["detail"]["by"].startswith("store owner ") and event["detail"]["by"].endswith(" acting as alice")
    # Changing a value records what it was.
    desk.as_("alice", "set", first, "问题类型", "咨询")
    last = [e for e in desk.show(first)["events"] if e["action"] == "field"][-1]
    assert _own(last["detail"]) == {"field": "问题类型", "before": "售后维修", "after": "咨询"}
    assert "fields: order=SO-1234  问题类型=咨询" in desk.as_(None, "show", first).stdout
    listed = {t["id"]: t["fields"] for t in desk.json(None, "list")}
    assert listed == {first: {"order": "SO-1234", "问题类型": "咨询"}, second: {"问题类型": "退换货"}}
    assert [t["id"] for t in desk.json(None, "list", "--field", "问题类型=退换货")] == [second]
    assert [t["id"] for t in desk.json(None, "list", "--field", "问题类型=咨询", "--field", "order=SO-1234")] == [first]
    assert desk.json(None, "list", "--field", "问题类型=咨询", "--field", "order=SO-9") == []
    # --clear removes it, and says so in the history.
    desk.as_("alice", "set", first, "order", "--clear")
    assert desk.show(first)["fields"] == {"问题类型": "咨询"}
    cleared = [e for e in desk.show(first)["events"] if e["action"] == "field"][-1]
    assert _own(cleared["detail"]) == {"field": "order", "before": "SO-1234", "after": None}


def _own(detail: dict) -> dict:
    """An event's own detail, without the caller's (via, origin, by) that every change records."""
    return {k: v for k, v in detail.items() if k not in ("via", "origin", "by")}


def test_set_mistakes_are_one_line_with_the_choices(desk: Desk) -> None:
    first, _ = _two_tickets(desk)
    refused(desk.as_("alice", "set", first, "问题类型", "退货", check=False),
            "问题类型 cannot be '退货'", "售后维修, 退换货, 咨询")
    refused(desk.as_("alice", "set", first, "问题", "咨询", check=False), "unknown field '问题'", "问题类型, order")
    refused(desk.as_("alice", "set", first, "order", check=False), "--clear")
    refused(desk.as_("alice", "set", first, "order", "x", "--clear", check=False), "--clear")
    refused(desk.as_("alice", "set", first, "order", "--clear", check=False), f"{first} has no order to clear")
    refused(desk.as_("alice", "set", "T-999999", "order", "x", check=False), "no ticket T-999999")
    refused(desk.as_(None, "list", "--field", "问题=咨询", check=False), "unknown field")
    # The subprocess path too: exit status and stderr across the process boundary.
    proc = desk.as_("alice", "set", first, "问题类型", "退货", check=False, fork=True)
    refused(proc, "choose one of")
    assert desk.show(first)["fields"] == {}
    assert not [e for e in desk.show(first)["events"] if e["action"] == "field"]


def test_an_agent_sets_fields_on_own_or_unassigned_tickets_only(desk: Desk) -> None:
    first, _ = _two_tickets(desk)
    desk.as_("bob", "take", first)
    refused(desk.as_("alice", "set", first, "order", "1", check=False), "assigned to bob")
    desk.as_("carol", "set", first, "order", "1")     # a supervisor may
    assert desk.show(first)["fields"] == {"order": "1"}
