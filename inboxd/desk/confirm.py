"""待确认: whether a customer's reply to a solved ticket confirms it (closes) or asks again (reopens).

(Stub: the phrases and the decision are filled in by the issue's part 2.)
"""

from __future__ import annotations

from dataclasses import dataclass

from inboxd.config import Table

CONFIRM_KEYS = ("phrases",)


@dataclass(frozen=True)
class ConfirmSettings:
    phrases: tuple[str, ...] = ()


def parse_confirm(raw: dict | None, *, file_name: str) -> ConfirmSettings:
    table = Table(file_name, "confirm", raw, CONFIRM_KEYS)
    return ConfirmSettings(phrases=table.strings("phrases", ()))
