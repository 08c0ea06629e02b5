"""Custom ticket fields (`[[fields]]`): their names and allowed choices, and checking a value against them.

A field is what the team's ticket form records beside status and tags
(问题类型 = 售后维修, say).  `parse_fields` reads the `[[fields]]` tables once
with the rest of the config; `check_value` is the pure decision `inboxd set`
makes before anything is written: the field must be declared, and a value
must be one of its choices when it has any (free text otherwise).  Fields
are never required: a ticket opened by mail knows none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from inboxd.config import Table, show

FIELD_KEYS = ("name", "choices")
# A value is one line of text on a form; longer text belongs in a note.
MAX_VALUE = 200


class FieldError(ValueError):
    """A value `inboxd set` refuses; str() is the one-line reason."""


@dataclass(frozen=True)
class Field:
    name: str
    choices: tuple[str, ...] = ()


def parse_fields(raw: list | None, *, file_name: str) -> tuple[Field, ...]:
    """The `[[fields]]` of the config file, validated; ConfigError names the key at fault."""
    if raw is None:
        return ()
    top = Table(file_name, "", {"fields": raw}, ("fields",))
    fields: dict[str, Field] = {}
    for table in top.tables("fields", FIELD_KEYS):
        name = table.string("name").strip()
        if not name:
            table.fail("name", "must not be empty")
        # The name is typed on the command line and written as --field NAME=VALUE.
        if any(c.isspace() or c == "=" for c in name):
            table.fail("name", f"must not contain spaces or \"=\", got {show(name)}")
        if name in fields:
            table.fail("name", f"duplicate field name {show(name)}")
        choices = tuple(c.strip() for c in table.strings("choices", ()))
        if any(not c for c in choices):
            table.fail("choices", "a choice must not be empty")
        if len(set(choices)) != len(choices):
            table.fail("choices", "a choice is listed twice")
        fields[name] = Field(name, choices)
    return tuple(fields.values())


def field_named(fields: tuple[Field, ...], name: str) -> Field:
    """The declared field `name`, or FieldError naming the declared ones."""
    for f in fields:
        if f.name == name:
            return f
    known = ", ".join(f.name for f in fields)
    raise FieldError(f"unknown field {name!r}; " + (f"known fields: {known}" if known
                                                      else "no [[fields]] are configured"))


def check_value(fields: tuple[Field, ...], name: str, value: str) -> str:
    """The value to store for field `name` (trimmed), or FieldError with the reason.

    With choices, a value must be one of them exactly; the error lists them.
    """
    field = field_named(fields, name)
    value = value.strip()
    if not value:
        raise FieldError(f"an empty value for {name}; use --clear to remove it")
    if any(c in value for c in "\r\n\t"):
        raise FieldError(f"a value for {name} is one line; put longer text in a note")
    if len(value) > MAX_VALUE:
        raise FieldError(f"a value for {name} is at most {MAX_VALUE} characters")
    if field.choices and value not in field.choices:
        raise FieldError(f"{name} cannot be {value!r}; choose one of: {', '.join(field.choices)}")
    return value


def parse_filter(fields: tuple[Field, ...], text: str) -> tuple[str, str]:
    """A `--field NAME=VALUE` filter as (name, value); the field must be declared."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise FieldError(f"--field wants NAME=VALUE, got {text!r}")
    field = field_named(fields, name.strip())
    return field.name, value.strip()
