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

# How people name the zones a reader may not share with the writer.  Chinese
# readers say "北京时间", not "CST" (which is also US Central time); a zone not
# named here is written by its abbreviation when tzdata has a lettered one
# that is not ambiguous, else as an offset from UTC ("UTC+8").
_ZONE_NAMES = {
    "Asia/Shanghai": ("北京时间", "北京時間", "China time"),
    "Asia/Chongqing": ("北京时间", "北京時間", "China time"),
    "Asia/Harbin": ("北京时间", "北京時間", "China time"),
    "Asia/Urumqi": ("乌鲁木齐时间", "烏魯木齊時間", "Urumqi time"),
    "Asia/Hong_Kong": ("香港时间", "香港時間", "Hong Kong time"),
    "Asia/Macau": ("澳门时间", "澳門時間", "Macau time"),
    "Asia/Taipei": ("台北时间", "台北時間", "Taipei time"),
    "Asia/Singapore": ("新加坡时间", "新加坡時間", "Singapore time"),
    "Asia/Tokyo": ("东京时间", "東京時間", "Tokyo time"),
    "Asia/Seoul": ("首尔时间", "首爾時間", "Seoul time"),
    "Europe/London": ("伦敦时间", "倫敦時間", None),
    "Europe/Berlin": ("柏林时间", "柏林時間", None),
    "Europe/Paris": ("巴黎时间", "巴黎時間", None),
    "America/New_York": ("纽约时间", "紐約時間", None),
    "America/Los_Angeles": ("洛杉矶时间", "洛杉磯時間", None),
    "UTC": ("UTC", "UTC", "UTC"),
    "Etc/UTC": ("UTC", "UTC", "UTC"),
}
# Abbreviations tzdata uses for more than one zone.
_AMBIGUOUS = frozenset({"CST", "CDT", "IST", "AST", "GST", "SST"})


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
                 year: bool = False, marker: bool = False) -> str:
    """`at` in `zone`, the way `language` writes it: "12月1日 09:30" (zh), "Tue 1 Dec, 09:30" (en).

    An empty string for None.  `year` adds the year ("2026年12月1日 09:30",
    "Tue 1 Dec 2026, 09:30"); `weekday` (en: on; zh: off unless asked) names the day.
    `marker` names the zone, for a reader who may live in another one:
    "12月1日 09:30（北京时间）", "Tue 1 Dec, 09:30 (EST)" (see `zone_label`).
    """
    if at is None:
        return ""
    local = at.astimezone(zone)
    clock = f"{local.hour:02d}:{local.minute:02d}"
    if language.startswith("zh"):
        date = f"{local.year}年{local.month}月{local.day}日" if year else f"{local.month}月{local.day}日"
        return f"{date} {clock}" + (f"（{zone_label(at, zone, language)}）" if marker else "")
    day = f"{_WEEKDAYS[local.weekday()]} " if weekday else ""
    date = f"{day}{local.day} {_MONTHS[local.month - 1]}"
    text = f"{date} {local.year}, {clock}" if year else f"{date}, {clock}"
    return text + (f" ({zone_label(at, zone, language)})" if marker else "")


def zone_label(at: datetime, zone: tzinfo, language: str) -> str:
    """The name a reader of `language` knows `zone` by at instant `at`: "北京时间", "EST", "CEST", "UTC+5:30"."""
    key = getattr(zone, "key", None) or str(zone)
    names = _ZONE_NAMES.get(key)
    if names is not None:
        name = names[1] if language == "zh-Hant" else names[0] if language.startswith("zh") else names[2]
        if name:
            return name
    local = at.astimezone(zone)
    abbreviation = local.tzname() or ""
    if abbreviation.isalpha() and abbreviation not in _AMBIGUOUS:
        return abbreviation
    return utc_offset(local)


def utc_offset(local: datetime) -> str:
    """The offset of an aware datetime from UTC as people write it: "UTC+8", "UTC-3", "UTC+5:30"."""
    minutes = int(local.utcoffset().total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def zone_key(zone: tzinfo) -> str:
    """The IANA name of a zone ("Europe/Berlin"), for a heading that says which zone times are in."""
    return getattr(zone, "key", None) or str(zone)


def weekday_name(at: datetime, zone: tzinfo, language: str) -> str:
    """The day of the week of `at` in `zone`: "周二" (zh), "週二" (zh-Hant), "Tue" (en)."""
    index = at.astimezone(zone).weekday()
    if language == "zh-Hant":
        return _ZH_HANT_WEEKDAYS[index]
    return _ZH_WEEKDAYS[index] if language.startswith("zh") else _WEEKDAYS[index]
