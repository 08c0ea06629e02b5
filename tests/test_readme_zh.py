"""The README's Chinese team's configuration loads and means what its comments say."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path

from inboxd.config import parse_settings
from inboxd.desk.csat import parse_answer

ROOT = Path(__file__).resolve().parent.parent


def _example(tmp_path: Path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### A Chinese team's setup"):]
    text = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    return parse_settings(tomllib.loads(text), tmp_path / "inboxd.toml")


def test_the_chinese_team_example_loads_with_its_scale_tiers_and_zones(tmp_path: Path) -> None:
    settings = _example(tmp_path)
    policies = settings.policies
    mailbox = settings.mailbox("kefu")
    assert (mailbox.language, mailbox.display_name, mailbox.confirm_closes) == ("zh", "示例科技客服中心", True)
    assert str(policies.mailbox_zone(mailbox)) == "Asia/Shanghai"
    # The ticket form's scale: higher is better, 5 to 2.
    assert [(level.score, level.labels["zh"]) for level in policies.csat.scale] == [
        (5, "非常满意"), (4, "满意"), (3, "一般"), (2, "不满意")]
    assert policies.csat.delay == timedelta(minutes=15)
    # "4分" is an improvement on the team's scale, not a complaint.
    assert parse_answer("4分", policies.csat.scale).rating == 4
    tiers = {agent.name: (agent.label, agent.tier, agent.language) for agent in settings.agents}
    assert tiers == {"xiaowang": ("小王", 1, "zh"), "laoli": ("老李", 2, "zh"), "zhangjl": ("张经理", None, "zh")}
    assert settings.agent("zhangjl").role == "supervisor"
    sla = policies.sla["standard"]
    assert dict(sla.tier_response) == {2: timedelta(hours=24)}
    assert sla.calendar.name == "cn"
    assert [field.name for field in policies.fields] == ["问题类型"]
    assert settings.reports.repeat_window == timedelta(days=7)
