"""Times as people read them: in their own zone, in their language's way of writing a date.

Customers, agents and supervisors never see UTC unless they asked for it.
Mail to a customer is written in the mailbox's zone (``Policies.mailbox_zone``),
the CLI and mail to an agent in the agent's (``Policies.agent_zone``).  This
module only formats; it never reads the clock.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

# Weekday and month names of the English form, fixed here so the output does
# not depend on the machine's C locale.
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ZH_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_ZH_HANT_WEEKDAYS = ("週一", "週二", "週三", "週四", "週五", "週六", "週日")


@lru_cache(maxsize=1)
def machine_zone() -> ZoneInfo:
    """The machine's own zone (/etc/localtime, $TZ), as an IANA zone; UTC when it has none."""
    try:
        import tzlocal

        zone = tzlocal.get_localzone()
        return zone if isinstance(zone, ZoneInfo) else ZoneInfo(str(zone))
    except Exception:  # A machine without a usable zone setting is read as UTC.
        return ZoneInfo("UTC")


def format_local(at: datetime | None, zone: tzinfo, language: str, *, weekday: bool = True,
                 year: bool = False) -> str:
    """`at` in `zone`, the way `language` writes it: "12月1日 09:30" (zh), "Tue 1 Dec, 09:30" (en).

    An empty string for None.  `year` adds the year ("2026年12月1日 09:30",
    "Tue 1 Dec 2026, 09:30"); `weekday` (en: on; zh: off unless asked) names the day.
    """
    if at is None:
        return ""
    local = at.astimezone(zone)
    clock = f"{local.hour:02d}:{local.minute:02d}"
    if language.startswith("zh"):
        date = f"{local.year}年{local.month}月{local.day}日" if year else f"{local.month}月{local.day}日"
        return f"{date} {clock}"
    day = f"{_WEEKDAYS[local.weekday()]} " if weekday else ""
    date = f"{day}{local.day} {_MONTHS[local.month - 1]}"
    return f"{date} {local.year}, {clock}" if year else f"{date}, {clock}"


def weekday_name(at: datetime, zone: tzinfo, language: str) -> str:
    """The day of the week of `at` in `zone`: "周二" (zh), "週二" (zh-Hant), "Tue" (en)."""
    index = at.astimezone(zone).weekday()
    if language == "zh-Hant":
        return _ZH_HANT_WEEKDAYS[index]
    return _ZH_WEEKDAYS[index] if language.startswith("zh") else _WEEKDAYS[index]
