"""The systemd unit agrees with the daemon's defaults: its socket directory, its group, and a syntax systemd accepts.

The daemon binds `[api] socket` (default /run/inboxd/api.sock) and gives it
to `[api] group` (default inboxd); the unit must create that directory, for
that group, closed to everyone else, and run the daemon as a member of it.
`systemd-analyze verify` (when the machine has it) checks every key of the
unit is one systemd knows.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inboxd.config import DEFAULT_API_SOCKET, ApiSettings

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "inboxd.service"


def _service() -> dict[str, list[str]]:
    """The [Service] section's keys, each with its values in order (comments and other sections left out)."""
    keys: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_the_unit_makes_the_default_socket_directory_for_the_default_group_only() -> None:
    service = _service()
    assert DEFAULT_API_SOCKET.parent.parent == Path("/run")
    assert service["RuntimeDirectory"] == [DEFAULT_API_SOCKET.parent.name]
    # Owner and group may enter; the group is the socket's, so agents reach it; nobody else may.
    assert service["RuntimeDirectoryMode"] == ["0750"]
    assert service["Group"] == [ApiSettings().group]
    assert service["User"] == ["inboxd"]
    # The daemon's own files stay private; the socket's 0660 is set by the daemon itself.
    assert service["UMask"] == ["0077"]
    assert service["StateDirectoryMode"] == ["0700"]
    # The socket is a Unix socket: the sandbox must allow the family.
    assert "AF_UNIX" in service["RestrictAddressFamilies"][0].split()
    assert service["ExecStart"][0].split()[-1] == "run"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_knows_every_key_of_the_unit(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: point it at this environment's inboxd.
    program = Path(sys.executable).parent / "inboxd"
    unit = tmp_path / "inboxd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/inboxd", str(program)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Unknown keys are only warnings (exit 0), so the output must be empty too.
    assert done.stderr.strip() == "" and done.stdout.strip() == ""
