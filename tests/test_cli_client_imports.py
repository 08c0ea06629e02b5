"""The CLI as an agent's client stays thin: no store, no mail stack, and one line when the daemon is away.

`inboxd` runs in a fresh interpreter with `INBOXD_URL` naming a Unix socket
where nothing listens, so every command goes the client's way and fails to
connect.  What the process imported by then is what an agent's every
command pays for at start-up: it must not include SQLAlchemy, the IMAP or
SMTP libraries, jinja2 or inboxd's store.  The error itself is one line on
stderr that names the socket it tried, with a non-zero exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Imported by the store's owner's direct path and the daemon, never by the client.
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "imapclient", "aiosmtplib", "jinja2", "inboxd.store")

# Runs the real entry point (inboxd.cli.main:main, the `inboxd` console script)
# and, however it exits, writes the names of the imported modules to a file.
PROBE = """
import atexit, json, os, sys

def _dump():
    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump(sorted(sys.modules), out)

atexit.register(_dump)
sys.argv = ["inboxd", *json.loads(os.environ["PROBE_ARGS"])]
from inboxd.cli.main import main
main()
"""


def _run_client(tmp_path: Path, args: list[str]) -> tuple[subprocess.CompletedProcess, list[str], Path]:
    sock = tmp_path / "run" / "api.sock"
    sock.parent.mkdir(exist_ok=True)
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INBOXD_")}
    env.update(INBOXD_URL=f"unix://{sock}", PROBE_OUT=str(out), PROBE_ARGS=json.dumps(args))
    # A directory with no inboxd.toml, as an agent's home would be.
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert out.exists(), f"the probe did not finish: {proc.stderr[-2000:]}"
    return proc, json.loads(out.read_text()), sock


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("args", [["list"], ["list", "--limit", "50", "--json"], ["show", "T-1000"],
                                  ["take", "T-1000"], ["--as", "bob", "list"]], ids=" ".join)
def test_a_client_command_imports_no_store_or_mail_stack_and_names_the_socket(tmp_path: Path, args) -> None:
    proc, modules, sock = _run_client(tmp_path, args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(sock) in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    # The client did get as far as its own module: the test is about that path.
    assert "inboxd.api.client" in modules
    assert _heavy(modules) == []


def test_help_imports_no_store_or_mail_stack(tmp_path: Path) -> None:
    proc, modules, _ = _run_client(tmp_path, ["--help"])
    assert proc.returncode == 0
    assert "list" in proc.stdout
    assert _heavy(modules) == []
