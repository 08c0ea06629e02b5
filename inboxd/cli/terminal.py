"""Make text from mail safe to print on an agent's terminal.

Customers write the subjects, names and bodies that `inboxd show` and
`inboxd list` print, so a mail can carry terminal escape sequences: OSC 52
writes the agent's clipboard, CSI sequences clear the screen or move the
cursor to paint a fake prompt, a carriage return overwrites what came before
it on the line, and the bidirectional overrides reorder what the agent reads.

`printable` replaces each such character with a visible escape in Python's
notation (ESC becomes the four characters ``\\x1b``, U+202E becomes
``\\u202e``), so the agent sees that something was there and what it was,
and the terminal receives only ordinary text.  Newline and tab are kept: the
thread's text is meant to be read as lines.  JSON output is never passed
through here: `json.dumps` escapes every control character itself, and the
JSON must carry the text exactly as it was received.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 controls except tab and newline, DEL, the C1 controls (U+0080-U+009F,
# where CSI U+009B and OSC U+009D start sequences on many terminals), the
# line and paragraph separators, and the bidirectional embeddings, overrides
# and isolates.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control, separator and bidi-override character shown as a visible escape."""
    return _UNSAFE.sub(_escape, text)
