"""Where inboxd.toml is, and the error every config problem raises: what the thin client needs of the config.

Kept apart from inboxd.config (which validates the whole file and takes a
noticeable part of a second to import) so that an agent's command, which
only looks for the file to find the daemon's socket, starts fast.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from pathlib import Path

# A SQLite store URL: scheme, file path (relative to the config when not absolute), query.
SQLITE_URL = re.compile(r"(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?")


class ConfigError(Exception):
    """A configuration problem; str() is one line: "<file>: <key path>: <problem>"."""


def find_config_path(explicit: str | Path | None) -> Path:
    """--config PATH, then $INBOXD_CONFIG, then ./inboxd.toml; ConfigError if it does not exist."""
    if explicit:
        candidate = Path(explicit)
    elif os.environ.get("INBOXD_CONFIG"):
        candidate = Path(os.environ["INBOXD_CONFIG"])
    else:
        candidate = Path("inboxd.toml")
    if not candidate.is_file():
        raise ConfigError(f"{candidate}: no such file")
    return candidate.absolute()


def raw_config(path: Path) -> dict | None:
    """The config's TOML as it is, unvalidated; None when this user cannot read it (or it is not TOML:
    then inboxd.config's load says why).  Read once per command, and again only if the file changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _parsed(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _parsed(path: str, _mtime_ns: int, _size: int) -> dict | None:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return None
