"""Patterns compiled at their first use behave as compiled ones, and the daemon's start leaves them uncompiled.

`LazyPattern` (inboxd.mail.lazypattern) stands for `re.compile(pattern,
flags)`: every method gives what the compiled pattern gives, before and
after its first use.  A fresh interpreter that imports the daemon has not
imported flufl.bounce or the quote stripper and has compiled none of the
auto-reply rules' patterns; they come with the first mail that needs them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from inboxd.mail.lazypattern import LazyPattern

CASES = [
    (r"(?P<word>\w+)@(?P<host>[\w.]+)", re.I, ["Mail To: Anna@Example.org, bob@x.cn", "nobody", ""]),
    (r"^\W*(?:out of office|自动回复)\s*[:：]", re.I | re.M, ["Out of Office: Re: order", "x\n自动回复：你好", "in"]),
    (r"[\s,;]+", 0, ["a, b;c  d", ""]),
]


def _found(match: re.Match | None) -> tuple | None:
    return None if match is None else (match.span(), match.groups(), match.groupdict())


def test_every_method_gives_what_the_compiled_pattern_gives():
    for pattern, flags, texts in CASES:
        lazy, compiled = LazyPattern(pattern, flags), re.compile(pattern, flags)
        assert lazy.pattern == compiled.pattern
        for text in texts:
            for name in ("search", "match", "fullmatch"):
                assert _found(getattr(lazy, name)(text)) == _found(getattr(compiled, name)(text))
                assert _found(getattr(lazy, name)(text, 1)) == _found(getattr(compiled, name)(text, 1))
            assert lazy.findall(text) == compiled.findall(text)
            assert [m.span() for m in lazy.finditer(text)] == [m.span() for m in compiled.finditer(text)]
            assert lazy.sub("-", text) == compiled.sub("-", text)
            assert lazy.subn("-", text) == compiled.subn("-", text)
            assert lazy.split(text) == compiled.split(text)
        assert (lazy.flags, lazy.groups, lazy.groupindex) == (compiled.flags, compiled.groups, compiled.groupindex)


def test_the_pattern_text_is_there_before_the_first_use():
    lazy = LazyPattern(r"a(b)")
    assert lazy.pattern == "a(b)"
    assert "_compiled" not in vars(lazy)
    assert LazyPattern(lazy.pattern + "c").match("abc").group(1) == "b"
    assert "_compiled" not in vars(lazy)


def test_the_daemon_starts_without_flufl_the_quote_stripper_or_the_rules_compiled():
    probe = ("import json, sys; import inboxd.cli.main, inboxd.config, inboxd.daemon; "
             "from inboxd.desk import autoreply; "
             "lazy = [n for n, v in vars(autoreply).items() if type(v).__name__ == 'LazyPattern']; "
             "compiled = [n for n in lazy if '_compiled' in vars(getattr(autoreply, n))]; "
             "print(json.dumps([sorted(sys.modules), lazy, compiled]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    modules, lazy, compiled = json.loads(out.stdout)
    assert "inboxd.mail.bounces" in modules
    assert [m for m in modules if m.split(".")[0] == "flufl" or m == "inboxd.mail.quotes"] == []
    assert "_STRONG_SUBJECT" in lazy and compiled == []
