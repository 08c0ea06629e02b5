"""Template lookup, strictness and sandboxing, and the shipped acknowledgements."""

from __future__ import annotations

from pathlib import Path

import pytest

from inboxd.outbound.templates import TemplateError, Templates

SHIPPED = Templates(Path(__file__).parent.parent / "templates")


def write(root: Path, files: dict[str, str]) -> Templates:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Templates(root)


def variables(*, sla: bool = True, name: str = "Alice") -> dict:
    return {
        "ticket": {"id": "T-1042", "subject": "Order late", "status": "new", "priority": "normal",
                   "created_at": "2024-05-01 09:30"},
        "customer": {"name": name, "email": "alice@example.org"},
        "mailbox": {"name": "support", "address": "support@example.com", "display_name": "Example Support"},
        "sla": {"first_response": "4 hours", "first_response_due": "2024-05-01 13:30"} if sla
        else {"first_response": None, "first_response_due": None},
    }


def test_lookup_order_mailbox_then_language_then_english(tmp_path):
    templates = write(tmp_path, {
        "en/ack/body.txt": "en body",
        "en/ack/subject.txt": "en subject",
        "zh/ack/body.txt": "zh body",
        "mailboxes/billing/ack/body.txt": "billing body",
    })
    render = templates.render
    assert render("ack/body.txt", {}, mailbox="billing", language="zh") == "billing body"
    assert render("ack/body.txt", {}, mailbox="support", language="zh") == "zh body"
    assert render("ack/body.txt", {}, mailbox="support", language="en") == "en body"
    assert render("ack/body.txt", {}, language="fr") == "en body"
    # A mailbox override of one file leaves the others inherited.
    assert render("ack/subject.txt", {}, mailbox="billing", language="zh") == "en subject"


def test_missing_template_names_what_was_looked_for(tmp_path):
    with pytest.raises(TemplateError, match=r"ack/body\.txt: no template found .*mailboxes/x/ack/body\.txt"):
        write(tmp_path, {}).render("ack/body.txt", {}, mailbox="x")


def test_undefined_variable_names_the_file_and_line(tmp_path):
    templates = write(tmp_path, {"en/ack/body.txt": "Hello\n{{ customer.nmae }}\n"})
    with pytest.raises(TemplateError) as info:
        templates.render("ack/body.txt", {"customer": {"name": "Alice"}})
    message = str(info.value)
    assert str(tmp_path / "en/ack/body.txt") + ":2:" in message
    assert "nmae" in message
    assert "\n" not in message


def test_syntax_error_names_the_file(tmp_path):
    templates = write(tmp_path, {"en/ack/body.txt": "ok\n{% if x %}\nno endif\n"})
    with pytest.raises(TemplateError, match=r"en/ack/body\.txt:\d+: syntax error"):
        templates.render("ack/body.txt", {"x": 1})


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ customer.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_blocks_python_internals(tmp_path, source):
    templates = write(tmp_path, {"en/t.txt": source})
    with pytest.raises(TemplateError, match=r"en/t\.txt:1: (unsafe access|error)"):
        templates.render("t.txt", {"customer": {"name": "Alice"}})


def test_unsafe_attribute_access_is_reported_as_such(tmp_path):
    templates = write(tmp_path, {"en/t.txt": "{{ ''.__class__.__mro__ }}"})
    with pytest.raises(TemplateError, match="unsafe access"):
        templates.render("t.txt", {})


def test_other_runtime_errors_become_template_errors(tmp_path):
    templates = write(tmp_path, {"en/t.txt": "{{ 1 // n }}"})
    with pytest.raises(TemplateError, match=r"t\.txt:1: error: .*division"):
        templates.render("t.txt", {"n": 0})


def test_autoescape_on_for_html_only(tmp_path):
    templates = write(tmp_path, {"en/t.txt": "{{ s }}", "en/t.html": "{{ s }}"})
    assert templates.render("t.txt", {"s": "<b>&"}) == "<b>&"
    assert templates.render("t.html", {"s": "<b>&"}) == "&lt;b&gt;&amp;"


def test_trailing_newline_is_kept(tmp_path):
    templates = write(tmp_path, {"en/t.txt": "line\n"})
    assert templates.render("t.txt", {}) == "line\n"


@pytest.mark.parametrize("mailbox", ["../en", "a/b", ".."])
def test_names_cannot_escape_the_root(tmp_path, mailbox):
    templates = write(tmp_path, {"en/t.txt": "x"})
    with pytest.raises(TemplateError, match="invalid mailbox"):
        templates.render("t.txt", {}, mailbox=mailbox)


def test_render_ack_collapses_subject_and_finds_optional_html(tmp_path):
    templates = write(tmp_path, {
        "en/ack/subject.txt": "  Received:\n  {{ ticket.subject }}\n",
        "en/ack/body.txt": "text",
        "mailboxes/vip/ack/body.html": "<p>{{ ticket.subject }}</p>",
    })
    v = {"ticket": {"subject": "A & B"}}
    assert templates.render_ack(v, mailbox="support", language="en") == ("Received: A & B", "text", None)
    assert templates.render_ack(v, mailbox="vip", language="en") == (
        "Received: A & B", "text", "<p>A &amp; B</p>")


def test_shipped_english_ack_with_sla():
    subject, text, html = SHIPPED.render_ack(variables(), mailbox="support", language="en")
    assert subject == "Order late"
    assert html is None
    assert text.startswith("Hello Alice,\n")
    assert "Thank you for contacting Example Support" in text
    assert "ticket T-1042" in text
    assert "keep\n[T-1042] in the subject" in text
    assert "reply within 4 hours,\nby 2024-05-01 13:30." in text
    assert "automatic message" in text
    assert "{" not in text and "\n\n\n" not in text


def test_shipped_english_ack_without_sla_or_name():
    _, text, _ = SHIPPED.render_ack(variables(sla=False, name=""), mailbox="support", language="en")
    assert text.startswith("Hello,\n")
    assert "within" not in text
    assert "as soon as possible" in text
    assert "[T-1042]" in text
    assert "\n\n\n" not in text


def test_shipped_chinese_ack_with_sla():
    v = variables()
    v["sla"]["first_response"] = "4 小时"
    v["customer"]["name"] = "李雷"
    subject, text, html = SHIPPED.render_ack(v, mailbox="support", language="zh")
    assert subject == "Order late"
    assert html is None
    assert text.startswith("尊敬的李雷：\n\n您好！感谢您联系")
    assert text.split("\n\n--")[0].endswith("此致\n敬礼！\n\nExample Support")
    assert "我们已收到您的来信" in text
    assert "工单编号为 T-1042" in text
    assert "我们会在 4 小时内回复您，最晚于 2024-05-01 13:30。" in text
    assert "回复时请保留邮件主题中的编号 [T-1042]" in text
    assert "此邮件为系统自动发送" in text
    assert "{" not in text and "\n\n\n" not in text


def test_shipped_chinese_ack_without_sla():
    _, text, _ = SHIPPED.render_ack(variables(sla=False, name=""), mailbox="support", language="zh")
    assert text.startswith("尊敬的客户：\n")
    assert "小时" not in text and "我们会在" not in text
    assert "我们会尽快回复您。" in text
    assert "\n\n\n" not in text


def test_shipped_ack_uses_the_configured_tag_when_given():
    v = variables()
    v["ticket"]["tag"] = "(Ticket #T-1042)"
    _, text, _ = SHIPPED.render_ack(v, mailbox="support", language="en")
    assert "(Ticket #T-1042)" in text and "[T-1042]" not in text


def test_shipped_subject_for_empty_ticket_subject():
    v = variables()
    v["ticket"]["subject"] = ""
    assert SHIPPED.render_ack(v, mailbox="support", language="en")[0] == "Your support request"
    assert SHIPPED.render_ack(v, mailbox="support", language="zh")[0] == "您的咨询"


def test_shipped_ack_requires_its_variables():
    v = variables()
    del v["sla"]
    with pytest.raises(TemplateError, match=r"en/ack/body\.txt:\d+: error: 'sla' is undefined"):
        SHIPPED.render_ack(v, mailbox="support", language="en")


def test_a_deployment_folder_overrides_the_shipped_templates_file_by_file(tmp_path):
    from inboxd.config import SHIPPED_TEMPLATES

    own = tmp_path / "own"
    write(own, {"en/ack/body.txt": "Our own body for {{ customer.name }}\n", "macros/mine.txt": "mine\n"})
    templates = Templates([own, SHIPPED_TEMPLATES])
    subject, text, _ = templates.render_ack(variables(), mailbox="support", language="en")
    assert text == "Our own body for Alice\n"
    assert subject == SHIPPED.render_ack(variables(), mailbox="support", language="en")[0]  # inherited
    # The shipped Chinese body is a better match for a zh mailbox than our English one.
    assert templates.render_ack(variables(), mailbox="support", language="zh")[1] == \
        SHIPPED.render_ack(variables(), mailbox="support", language="zh")[1]
    assert templates.render_file("macros/mine.txt", {}) == "mine\n"
    assert "Forgot password" in templates.render_file("macros/password_reset.txt", {
        "ticket": {"id": "T-1", "subject": "Login", "requester": {"name": "Ann", "email": "ann@example.org"}},
        "agent": {"name": "bob", "email": "bob@example.com"},
        "mailbox": {"name": "support", "address": "support@example.com", "display_name": "Support"}})
    with pytest.raises(TemplateError, match=rf"no template found \(looked for macros/none\.txt in {own}, "):
        templates.render_file("macros/none.txt", {})


def test_settings_search_the_deployment_folder_then_the_shipped_one(tmp_path):
    from inboxd.config import SHIPPED_TEMPLATES, load_settings

    path = tmp_path / "inboxd.toml"
    path.write_text('[[mailboxes]]\nname = "support"\naddress = "support@example.com"\n'
                    '[mailboxes.imap]\nhost = "imap.example.com"\nusername = "support"\n')
    assert load_settings(path).template_dirs == (SHIPPED_TEMPLATES,)
    (tmp_path / "templates").mkdir()
    assert load_settings(path).template_dirs == (tmp_path / "templates", SHIPPED_TEMPLATES)
    path.write_text(path.read_text() + '[templates]\ndir = "elsewhere"\n')
    assert load_settings(path).template_dirs == (tmp_path / "elsewhere", SHIPPED_TEMPLATES)


def test_a_macro_template_name_cannot_leave_the_template_folders(tmp_path):
    (tmp_path / "secret.txt").write_text("secret\n")
    templates = write(tmp_path / "root", {"macros/ok.txt": "ok\n"})
    with pytest.raises(TemplateError, match="no template found"):
        templates.render_file("macros/../../secret.txt", {})
