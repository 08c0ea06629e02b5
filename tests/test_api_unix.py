"""Who is calling, on the Unix socket, as real Unix users the test creates: the kernel's word (SO_PEERCRED).

Three users, named uniquely for this run, all members of a group of their
own that the socket belongs to (mode 0660): one is the agent "ann", one is
the admin "boss", and mallory is no agent at all.  Each runs the real
`inboxd` command as a client of the API (`runuser -u USER -- ...`).  ann may
take a ticket but not export; mallory is refused even a listing; boss may
act as alice with --as, and the ticket's history records "admin boss acting
as alice".  The users and the group are removed afterwards.
"""

from __future__ import annotations

import grp
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from inboxd.api.server import start
from inboxd.config import load_settings
from inboxd.daemon import run_once
from inboxd.store.engine import open_store
from inboxd.testing.mail import make_mail, make_message_id
from tests.support import cli, wait_until, write_config

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None
                                or shutil.which("runuser") is None,
                                reason="needs root, useradd and runuser to create the callers")


class Users:
    """The test's Unix users and group; `run(user, ...)` runs the inboxd CLI as that user."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.group = f"inboxd-test-{tag}"
        self.ann, self.mallory, self.boss = (f"ibx{tag}{who}" for who in ("ann", "mallory", "boss"))
        self.created: list[str] = []
        self.group_made = False
        self.python: list[str] = []
        self.env: dict[str, str] = {}

    def create(self) -> None:
        subprocess.run(["groupadd", self.group], check=True, capture_output=True)
        self.group_made = True
        for user in (self.ann, self.mallory, self.boss):
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--groups", self.group,
                            user], check=True, capture_output=True)
            self.created.append(user)
        self.python = self._interpreter()

    def remove(self) -> None:
        for user in self.created:
            subprocess.run(["userdel", "-r", user], capture_output=True)
        if self.group_made:
            subprocess.run(["groupdel", self.group], capture_output=True)

    def _interpreter(self) -> list[str]:
        """The project's Python as these users can run it.

        The venv's interpreter is the first choice.  Where it links to an
        interpreter under a directory only root may enter (a pyenv under
        /root), the system's Python of the same version runs the same code:
        the repository and the venv's packages on its path.
        """
        venv = [str(ROOT / ".venv" / "bin" / "python")]
        if self._works(venv, {}):
            return venv
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        system = f"/usr/bin/python{version}"
        site = ROOT / ".venv" / "lib" / f"python{version}" / "site-packages"
        env = {"PYTHONPATH": f"{ROOT}:{site}", "PYTHONDONTWRITEBYTECODE": "1"}
        if os.path.exists(system) and self._works([system], env):
            self.env = env
            return [system]
        pytest.skip(f"no Python that the user {self.ann} may run: {venv[0]} and {system} are out of reach")

    def _works(self, python: list[str], env: dict[str, str]) -> bool:
        proc = subprocess.run(["runuser", "-u", self.ann, "--", "env", *(f"{k}={v}" for k, v in env.items()),
                               *python, "-c", "import inboxd.cli.main"], capture_output=True, cwd="/")
        return proc.returncode == 0

    def run(self, user: str, config: Path, socket: Path, *args: str) -> subprocess.CompletedProcess:
        env = {**self.env, "INBOXD_URL": f"unix://{socket}", "HOME": "/nonexistent"}
        return subprocess.run(["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in env.items()),
                               *self.python, "-m", "inboxd", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=120, cwd="/")


@pytest.fixture
def users():
    made = Users()
    try:
        made.create()
        yield made
    finally:
        made.remove()


@pytest.fixture
def shared_dir():
    """A directory the test users can pass through (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="ibx-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_the_kernel_says_who_calls(users: Users, shared_dir: Path, dovecot, imap_user) -> None:
    agents = f"""
[[agents]]
name = "ann"
email = "ann@example.com"
role = "agent"
login = "{users.ann}"

[[agents]]
name = "boss"
email = "boss@example.com"
role = "admin"
login = "{users.boss}"
"""
    config = write_config(shared_dir, dovecot, [{"name": "support", "user": imap_user}], extra=agents)
    text = config.read_text()
    assert text.count('group = ""') == 1
    config.write_text(text.replace('group = ""', f'group = "{users.group}"'))
    config.chmod(0o644)
    for subject in ("Printer on fire", "打印机坏了"):
        dovecot.append(imap_user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject=subject,
                                                      message_id=make_message_id()))
    settings = load_settings(config)
    assert run_once(settings).failed == []
    engine = open_store(settings.store.url)
    server = start(settings, engine, threading.Event())
    assert server is not None
    sock = settings.api.socket
    try:
        wait_until(lambda: server.started, what="the API to listen")
        assert grp.getgrgid(sock.stat().st_gid).gr_name == users.group
        assert oct(sock.stat().st_mode & 0o777) == "0o660"

        def run(user: str, *args: str) -> subprocess.CompletedProcess:
            return users.run(user, config, sock, *args)

        # ann, an agent, sees the queue and takes a ticket.
        listed = run(users.ann, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        tickets = {t["subject"]: t["id"] for t in json.loads(listed.stdout)}
        assert set(tickets) == {"Printer on fire", "打印机坏了"}
        took = run(users.ann, "take", tickets["Printer on fire"])
        assert took.returncode == 0, took.stderr
        shown = json.loads(cli(config, "show", tickets["Printer on fire"], "--json").stdout)
        assert shown["assignee"] == "ann"
        [event] = [e for e in shown["events"] if e["actor"] == "ann"]
        assert event["detail"]["via"] == "api"
        assert f"unix user {users.ann}" in event["detail"]["origin"]

        # ... but may not export: one line, a failure, nothing on stdout.
        export = run(users.ann, "export")
        assert export.returncode != 0 and export.stdout == ""
        assert len(export.stderr.strip().splitlines()) == 1, export.stderr
        assert "supervisor" in export.stderr

        # mallory is in the socket's group but no agent: refused, even a listing.
        refused = run(users.mallory, "list", "--json")
        assert refused.returncode != 0 and refused.stdout == ""
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert f"Unix user {users.mallory}" in refused.stderr and "not an agent" in refused.stderr

        # ann may not act as anyone else; boss, an admin, may, and it is recorded.
        posing = run(users.ann, "--as", "alice", "take", tickets["打印机坏了"])
        assert posing.returncode != 0 and "admins" in posing.stderr
        acted = run(users.boss, "--as", "alice", "take", tickets["打印机坏了"])
        assert acted.returncode == 0, acted.stderr
        shown = json.loads(cli(config, "show", tickets["打印机坏了"], "--json").stdout)
        assert shown["assignee"] == "alice"
        [event] = [e for e in shown["events"] if e["actor"] == "alice"]
        assert event["detail"]["by"] == "admin boss acting as alice"
        assert f"unix user {users.boss}" in event["detail"]["origin"]
    finally:
        server.close()
        engine.dispose()
