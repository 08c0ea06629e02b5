"""The desk's policy sections: the README's complete example loads, and mistakes are named."""

import re
import tomllib
from pathlib import Path

import pytest

from inboxd.config import ConfigError, parse_settings
from inboxd.desk.slaclock import pending_since, pending_spells

ROOT = Path(__file__).resolve().parents[1]

BASE = """
[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "imap.example.com"
username = "support"

[[agents]]
name = "alice"
email = "alice@example.com"
[[agents]]
name = "bob"
email = "bob@example.com"
[[agents]]
name = "erin"
email = "erin@example.com"
"""


def settings_from(text: str, tmp_path: Path):
    return parse_settings(tomllib.loads(BASE + text), tmp_path / "inboxd.toml")


def test_the_readme_example_loads(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Rules, SLAs, calendars and surveys"):]
    example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    policies = settings_from(example, tmp_path).policies
    assert set(policies.sla) == {"standard", "vip"}
    assert policies.sla["standard"].calendar.name == "cn"
    assert [r.name for r in policies.rules.rules] == ["vip", "invoices to billing", "crash escalates"]
    assert policies.scheduler.unassigned_after_urgent.total_seconds() == 300
    assert policies.policy_for(named=None, mailbox_sla=None, priority="urgent").name == "vip"
    assert policies.policy_for(named="standard", mailbox_sla=None, priority="urgent").name == "standard"


@pytest.mark.parametrize("text, message", [
    ('[scheduler]\ndigest_time = "25:00"', 'inboxd.toml: scheduler.digest_time: expected a time of day such as "08:00", got "25:00"'),
    ('[scheduler]\ntimezone = "Mars/Olympus"', 'inboxd.toml: scheduler.timezone: unknown time zone "Mars/Olympus"'),
    ('[scheduler]\npending_reminder = "two days"', 'inboxd.toml: scheduler.pending_reminder: expected a duration such as "90s", "15m", "4h" or "2d", got "two days"'),
])
def test_scheduler_errors_name_the_key_when_the_config_is_read(tmp_path, text, message):
    with pytest.raises(ConfigError) as exc:
        settings_from(text, tmp_path)
    assert str(exc.value) == message


def test_mailbox_sla_must_exist(tmp_path):
    text = BASE.replace('address = "support@example.com"', 'address = "support@example.com"\nsla = "gold"')
    with pytest.raises(ConfigError) as exc:
        parse_settings(tomllib.loads(text), tmp_path / "inboxd.toml")
    assert str(exc.value) == "inboxd.toml: mailboxes[0].sla: unknown SLA policy 'gold'"


def test_pending_spells_from_both_event_styles():
    from datetime import UTC, datetime

    created = datetime(2026, 1, 5, 9, tzinfo=UTC)
    events = [
        ("2026-01-05 09:00:00.000000", "created", "{}"),
        ("2026-01-05 10:00:00.000000", "message", '{"status_before": "new", "status_after": "pending"}'),
        ("2026-01-05 12:00:00.000000", "message", '{"status_before": "pending", "status_after": "open"}'),
        ("2026-01-05 13:00:00.000000", "status", '{"changes": {"status": {"before": "open", "after": "pending"}}}'),
        ("2026-01-05 14:00:00.000000", "tag", '{"changes": {"tags": {"before": [], "after": ["x"]}}}'),
    ]
    spells = pending_spells(events, created)
    assert [(a.hour, b.hour if b else None) for a, b in spells] == [(10, 12), (13, None)]
    assert pending_since(events, created).hour == 13
    assert pending_since(events[:3], created) is None
