"""A real install: the wheel carries its templates and migrations, and the CLI's install-time checks.

The wheel test builds inboxd the way `pip install .` does, installs it into a
fresh virtual environment and runs it from a directory without a templates/
folder against the real test servers: a new mail must become a ticket and
get its acknowledgement, rendered from the templates inside the package.
The other tests are about what an operator meets first: `--version`,
`check-config` rendering every template, and read-only commands that must
not create an empty store at a mistyped path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from inboxd.testing.mail import make_mail
from tests.support import cli, write_config

REPO = Path(__file__).resolve().parent.parent

# Enough of a config for commands that never reach a server.
OFFLINE = """
[store]
url = "sqlite:///state/inboxd.db"

[[mailboxes]]
name = "support"
address = "support@example.com"
[mailboxes.imap]
host = "imap.example.com"
username = "support"

[[agents]]
name = "carol"
email = "carol@example.com"
role = "supervisor"
"""


def _build_wheel(out: Path) -> Path:
    """A wheel of a copy of the source tree (so no build/ or egg-info lands in the checkout)."""
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("inboxd", "templates"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode != 0:
        # Without an index to fetch the build backend from, build with the
        # setuptools already installed next to the tests.
        built = subprocess.run([*command, "--no-build-isolation"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = out.glob("inboxd-*.whl")
    return wheel


def _fresh_venv(path: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed; returns its python.

    The dependencies come from the environment running the tests, through a
    .pth line naming its site-packages.  Only the path is added: .pth files in
    that directory (the editable install's finder among them) are not run, and
    the fresh site-packages comes first, so `import inboxd` finds the wheel.
    """
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True, text=True)
    return python


def test_a_wheel_installed_in_a_fresh_venv_files_mail_and_acknowledges_it(tmp_path, dovecot, imap_user, smtp_sink):
    wheel = _build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    # The templates and every migration ship inside the package.
    shipped = {p.relative_to(REPO / "templates").as_posix() for p in (REPO / "templates").rglob("*") if p.is_file()}
    assert {f"inboxd/_templates/{name}" for name in shipped} <= names
    migrations = {p.relative_to(REPO).as_posix() for p in (REPO / "inboxd" / "store" / "migrations").rglob("*.py")}
    assert migrations and migrations <= names
    # So does every module of every subpackage (the package list is explicit).
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "inboxd").rglob("*.py")}
    assert modules <= names, sorted(modules - names)

    python = _fresh_venv(tmp_path / "venv", wheel)
    where = subprocess.run([str(python), "-c", "import inboxd, inboxd.config as c; print(inboxd.__file__);"
                                               " print(c.SHIPPED_TEMPLATES)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split("\n")
    assert Path(where[0]).is_relative_to(tmp_path / "venv"), where
    assert Path(where[1]) == Path(where[0]).parent / "_templates", where

    # A deployment directory with no templates/ folder: only the shipped ones can answer.
    site = tmp_path / "site"
    site.mkdir()
    config = write_config(site, dovecot, [{"name": "support", "user": imap_user}], smtp_port=smtp_sink.port,
                          acks=True)
    assert not (site / "templates").exists()
    dovecot.append(imap_user, "INBOX", make_mail(frm="Li Lei <lilei@example.cn>", subject="Order 4711 is late"))
    inboxd = str(tmp_path / "venv" / "bin" / "inboxd")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([inboxd, "--config", str(config), *args], capture_output=True, text=True, cwd=site,
                              timeout=300)

    version = run("--version")
    assert (version.returncode, version.stdout) == (0, "inboxd 0.1.0\n"), version.stderr
    checked = run("check-config")
    assert checked.returncode == 0, checked.stderr
    done = run("run", "--once")
    assert done.returncode == 0, done.stderr[-3000:]
    tickets = json.loads(run("list", "--json").stdout)
    assert [t["subject"] for t in tickets] == ["Order 4711 is late"]
    quarantined = run("quarantine", "list", "--json")
    assert (quarantined.returncode, json.loads(quarantined.stdout)) == (0, []), quarantined.stderr
    [ack] = smtp_sink.wait_for(1)
    assert ack.rcpt_tos == ["lilei@example.cn"]
    assert ack.message()["Subject"] == f"Re: [{tickets[0]['id']}] Order 4711 is late"


def test_version_prints_the_version() -> None:
    done = subprocess.run([sys.executable, "-m", "inboxd", "--version"], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "inboxd 0.1.0\n", "")


@pytest.mark.parametrize("command", [
    ["list"], ["show", "T-1000"], ["history", "T-1000"], ["quarantine", "list"], ["report"], ["export"],
    ["outbox", "list"],
])
def test_read_only_commands_refuse_a_missing_store_and_create_nothing(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "inboxd.toml"
    config.write_text(OFFLINE)
    done = cli(config, "--as", "carol", *command, check=False)
    assert done.returncode == 1
    assert done.stderr == (f"inboxd: inboxd.toml: store.url: no store at {tmp_path}/state/inboxd.db;"
                           " run `inboxd run` first, or check the path\n")
    assert not (tmp_path / "state").exists()


def test_a_write_command_still_creates_the_store(tmp_path: Path) -> None:
    config = tmp_path / "inboxd.toml"
    config.write_text(OFFLINE)
    done = cli(config, "--as", "carol", "take", "T-1000", check=False)
    assert (done.returncode, done.stderr.count("\n")) == (1, 1)
    assert "T-1000" in done.stderr
    assert (tmp_path / "state" / "inboxd.db").is_file()


def test_check_config_renders_every_template_and_names_a_broken_one(tmp_path: Path) -> None:
    config = tmp_path / "inboxd.toml"
    config.write_text(OFFLINE + """
[[macros]]
name = "refund"
template = "refund.txt"

[[macros]]
name = "inline"
body = "Hello {{ ticket.requester.name }}, {{ message.reply_text }} -- {{ agent.name }}"
""")
    macros = tmp_path / "templates" / "macros"
    macros.mkdir(parents=True)
    (macros / "refund.txt").write_text("Dear {{ ticket.requester.name }}, your refund for {{ ticket.subject }}.\n")
    # One file overridden; everything else comes from the shipped templates.
    ack = tmp_path / "templates" / "en" / "ack"
    ack.mkdir(parents=True)
    (ack / "body.txt").write_text("Thanks, {{ customer.name }}: {{ ticket.tag }}.\n")
    done = cli(config, "check-config", check=False)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr

    # A typo in a variable: one line naming the template, the file and line, and the problem.
    (ack / "body.txt").write_text("Thanks,\n{{ customer.nmae }}\n")
    done = cli(config, "check-config", check=False)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"inboxd: template ack for mailbox support (en): {ack / 'body.txt'}:2: error: ")
    assert "nmae" in line

    # A syntax error, and a macro whose file is missing.
    (ack / "body.txt").write_text("Thanks {% if %}\n")
    (macros / "refund.txt").unlink()
    done = cli(config, "check-config", check=False)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"inboxd: template ack for mailbox support (en): {ack / 'body.txt'}:1: syntax error")
    assert lines[1].startswith("inboxd: macro refund: macros/refund.txt: no template found (looked for"
                               f" macros/refund.txt in {tmp_path / 'templates'}, ")

    # A report template that assumes the per-agent section, which an agent's report lacks.
    (ack / "body.txt").unlink()
    (macros / "refund.txt").write_text("Refund.\n")
    report = tmp_path / "templates" / "en" / "report"
    report.mkdir(parents=True)
    (report / "body.txt").write_text("{% for name in report.agents %}{{ name }}\n{% endfor %}")
    done = cli(config, "check-config", check=False)
    assert done.returncode == 1
    assert done.stderr == (f"inboxd: template report: {report / 'body.txt'}:1: error:"
                           " 'dict object' has no attribute 'agents'\n")
