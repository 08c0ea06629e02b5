"""Custom ticket fields (`[[fields]]`): their names and allowed choices.

(Stub: filled in by the issue's part 6.)
"""

from __future__ import annotations

from dataclasses import dataclass

from inboxd.config import ConfigError

FIELD_KEYS = ("name", "choices")


@dataclass(frozen=True)
class Field:
    name: str
    choices: tuple[str, ...] = ()


def parse_fields(raw: list | None, *, file_name: str) -> tuple[Field, ...]:
    if raw:
        raise ConfigError(f"{file_name}: fields: not supported yet")
    return ()
