"""Commands by mail: the command lines an agent's mail starts with, read without side effects.

An agent's reply (or mail to the ticket's address) may start with lines such
as `#close`, `#assign bob` or `#标签 vip`.  `parse(text)` reads them from the
reply text (the new part above the quote; quote stripping is not its
business) and returns the commands, the lines it could not understand, and
the rest of the text, which goes to the customer or, after `#note`, becomes
the internal note.

The rules, which docs/practices/mailcommands.md repeats for the team:

* Command lines come first.  Blank lines before and between them are
  allowed; the first other line ends them, and everything from there on is
  the rest.  A `#` further down is text, never a command.
* A command line is `#` (or the full-width `＃`) and a word, then its
  argument.  English words are read in any case; a Chinese word may be
  followed by its argument without a space (`#分配bob`).
* `#note` ends the command lines: its argument and every line after it are
  the note.
* A word that is no command, or a command without the argument it needs,
  is an error entry; `#1` or `# heading` (no word) is not a command line.

What each command does is `call()`: one operation of the daemon's API
(inboxd.api.routes), run as the agent by inboxd.desk.agentcommands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inboxd.vocabulary import PRIORITIES

# Each command's words: English first (the name the history and the reply use), then Chinese,
# Simplified and Traditional.
WORDS: dict[str, tuple[str, ...]] = {
    "close": ("close", "关闭", "關閉"),
    "solve": ("solve", "solved", "解决", "已解决", "解決", "已解決"),
    "pending": ("pending", "待定", "待回复", "待回覆"),
    "reopen": ("reopen", "重开", "重新打开", "重開", "重新打開"),
    "assign": ("assign", "分配", "指派"),
    "take": ("take", "接手", "认领", "認領"),
    "unassign": ("unassign", "取消分配"),
    "tag": ("tag", "标签", "標籤"),
    "untag": ("untag", "删除标签", "刪除標籤"),
    "priority": ("priority", "优先级", "優先級"),
    "escalate": ("escalate", "升级", "升級"),
    "macro": ("macro", "宏", "模板", "巨集"),
    "note": ("note", "备注", "備註"),
}
_BY_WORD = {word.lower(): name for name, words in WORDS.items() for word in words}
# Longest first, so that "删除标签" is not read as "删除" + ... and "已解决" before "解决".
_CHINESE = sorted((w for w in _BY_WORD if not w.isascii()), key=len, reverse=True)

# What an argument means for the commands that need one ("" for none).
NEEDS = {"assign": "an agent's name", "tag": "one or more tags", "untag": "one or more tags",
         "priority": "a priority", "escalate": "a reason", "macro": "a macro's name"}

# Priorities in Chinese, Simplified and Traditional.
PRIORITY_WORDS = {"低": "low", "普通": "normal", "一般": "normal", "中": "normal", "高": "high",
                  "紧急": "urgent", "緊急": "urgent", "急": "urgent"}

_LINE = re.compile(r"[#＃](\S*)(.*)", re.S)
_TAG_SEPARATORS = re.compile(r"[\s,，、;；]+")
# An escalation's first word names where it goes when it is a tier or the supervisors.
_TIER = re.compile(r"(?:tier|t|l)\d+", re.I)
SUPERVISOR_WORDS = ("supervisor", "主管", "组长", "組長")


@dataclass(frozen=True)
class Command:
    """One understood command line: its name (a key of WORDS), its argument, and the line as written."""

    name: str
    arg: str
    line: str


@dataclass(frozen=True)
class CommandError:
    """A command line that was not understood, and why (a sentence for the agent)."""

    line: str
    reason: str


@dataclass(frozen=True)
class Parsed:
    commands: tuple[Command, ...] = ()
    errors: tuple[CommandError, ...] = ()
    rest: str = ""                      # the text after the command lines (the note's text after #note)
    note: bool = False                  # a #note line was among them

    @property
    def empty(self) -> bool:
        """No command line at all: the mail is an ordinary answer."""
        return not (self.commands or self.errors or self.note)

    @property
    def actions(self) -> tuple[Command, ...]:
        """The commands that change the ticket (all but #note, which makes the mail itself a note)."""
        return tuple(c for c in self.commands if c.name != "note")


def parse(text: str) -> Parsed:
    """The command lines `text` starts with, and the rest (see the module's rules)."""
    lines = text.replace("\r\n", "\n").split("\n")
    commands: list[Command] = []
    errors: list[CommandError] = []
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        word, arg = _split(line)
        if word is None:
            return Parsed(tuple(commands), tuple(errors), _rest(lines[i:]), False)
        name = _BY_WORD.get(word.lower())
        if name is None:
            errors.append(CommandError(line, f"unknown command #{word}"))
            continue
        if name == "note":
            note = "\n".join([arg] + lines[i + 1:]) if arg else "\n".join(lines[i + 1:])
            commands.append(Command("note", arg, line))
            return Parsed(tuple(commands), tuple(errors), note.strip("\n").strip(), True)
        problem = _check(name, arg)
        if problem:
            errors.append(CommandError(line, problem))
        else:
            commands.append(Command(name, _normal(name, arg), line))
    return Parsed(tuple(commands), tuple(errors), "", False)


def _split(line: str) -> tuple[str | None, str]:
    """(the command word, its argument), or (None, "") for a line that is no command line."""
    m = _LINE.fullmatch(line)
    if m is None or not m[1] or not (m[1][0].isalpha()):
        return None, ""
    word, arg = m[1], m[2]
    if word.lower() not in _BY_WORD and not word.isascii():
        # Chinese runs the argument on without a space: #分配bob, #标签vip.
        for known in _CHINESE:
            if word.startswith(known):
                word, arg = known, word[len(known):] + arg
                break
    return word, " ".join(arg.split())


def _check(name: str, arg: str) -> str:
    """Why the argument does not do for this command ("" when it does)."""
    if name in NEEDS and not arg:
        return f"#{name} needs {NEEDS[name]}"
    # "#close no survey" is the one argument close reads; other words after #close are ignored.
    if name not in NEEDS and arg and name != "close":
        return f"#{name} takes no argument (got {arg!r})"
    if name == "priority" and _priority(arg) is None:
        return f"unknown priority {arg!r}; use one of {', '.join(PRIORITIES)}"
    if name == "assign" and len(arg.split()) != 1:
        return f"#assign names one agent (got {arg!r})"
    return ""


def _priority(arg: str) -> str | None:
    value = arg.strip().lower()
    value = PRIORITY_WORDS.get(value, value)
    return value if value in PRIORITIES else None


def _normal(name: str, arg: str) -> str:
    """The argument as the API takes it: a priority in English (the others as written)."""
    return _priority(arg) or arg if name == "priority" else arg


def _rest(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n")


@dataclass(frozen=True)
class Plan:
    """What filing does with an agent's command lines: the commands to run once it is filed, or the
    refusals the agent is told of (then none runs), and why the sender was or was not trusted."""

    run: tuple[Command, ...]
    refused: tuple[CommandError, ...]
    trust: str


def plan(parsed: Parsed, trusted: bool, trust_reason: str) -> Plan:
    """All of a mail's commands run, or none: a line not understood, or a sender not trusted, refuses them all,
    so an agent never finds half of what they asked done."""
    actions = parsed.actions
    if parsed.errors:
        others = tuple(CommandError(c.line, "not run: another command line of the mail was not understood")
                       for c in actions)
        return Plan((), parsed.errors + others, trust_reason)
    if not trusted:
        return Plan((), tuple(CommandError(c.line, f"not run: {trust_reason}") for c in actions), trust_reason)
    return Plan(actions, (), trust_reason)


def call(command: Command, ref: str) -> tuple[str, dict]:
    """The API operation (inboxd.api.routes) and parameters that carry out `command` on ticket `ref`."""
    name, arg = command.name, command.arg
    if name == "close":
        return "close", {"id": ref, "survey": not _no_survey(arg)}
    if name in ("solve", "pending"):
        return "set_status", {"id": ref, "status": "solved" if name == "solve" else "pending"}
    if name in ("reopen", "take", "unassign"):
        return name, {"id": ref}
    if name == "assign":
        return "assign", {"id": ref, "agent": arg}
    if name in ("tag", "untag"):
        return name, {"id": ref, "tags": [t for t in _TAG_SEPARATORS.split(arg) if t]}
    if name == "priority":
        return "priority", {"id": ref, "priority": arg}
    if name == "escalate":
        to, reason = escalation_target(arg)
        return "escalate", {"id": ref, "to": to, "reason": reason}
    if name == "macro":
        return "macro_apply", {"id": ref, "name": arg, "text": None}
    raise ValueError(f"#{name} is not run through the API")


def _no_survey(arg: str) -> bool:
    words = arg.lower().replace("-", " ")
    return "no survey" in words or "不调查" in words or "不調查" in words or "无调查" in words


def escalation_target(arg: str) -> tuple[str, str]:
    """Where `#escalate ARG` goes and why: a first word tier2 (t2, l2) or supervisor (主管) names the
    target, the rest is the reason; otherwise the supervisors review it and all of ARG is the reason."""
    first, _, rest = arg.partition(" ")
    if _TIER.fullmatch(first) and rest.strip():
        return first.lower(), rest.strip()
    if first.lower() in SUPERVISOR_WORDS and rest.strip():
        return "supervisor", rest.strip()
    return "supervisor", arg


__all__ = ["Command", "CommandError", "Parsed", "Plan", "WORDS", "call", "escalation_target", "parse", "plan"]
