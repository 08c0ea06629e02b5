"""A regular expression compiled at its first use instead of at import.

Python compiles a pattern in pure Python; a long alternation (a list of
bounce phrases in ten languages) costs a millisecond or more.  Patterns
that only an unusual mail needs (a bounce's report, a vacation reply's
text) are declared with `LazyPattern`, so a daemon whose mail never needs
them does not pay for them at every start.  The first use compiles it
(through `re.compile`, the same object an eager pattern would be) and
keeps the compiled pattern's methods on the instance, so every later
call costs what a compiled pattern's does.
"""

from __future__ import annotations

import re

__all__ = ["LazyPattern"]

# The compiled pattern's methods callers use; each is copied onto the instance at the first use.
_METHODS = ("search", "match", "fullmatch", "finditer", "findall", "sub", "subn", "split")


class LazyPattern:
    """A stand-in for `re.compile(pattern, flags)` that compiles when first used.

    `pattern` is available without compiling (other patterns are built from
    it); any other attribute (`search`, `groupindex`, ...) compiles it.  Two
    threads that use it first at once both compile it, harmlessly: the
    results are equal.
    """

    def __init__(self, pattern: str, flags: int | re.RegexFlag = 0) -> None:
        self.pattern = pattern
        self._flags = flags

    def __getattr__(self, name: str):
        # Only called for what the instance does not hold yet: the first use.
        if name.startswith("__"):
            raise AttributeError(name)
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            compiled = re.compile(self.pattern, self._flags)
            for method in _METHODS:
                setattr(self, method, getattr(compiled, method))
            self._compiled = compiled
        return getattr(compiled, name)

    def __repr__(self) -> str:
        return f"LazyPattern({self.pattern!r}, {self._flags!r})"
