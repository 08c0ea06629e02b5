"""Run a private PostgreSQL cluster on a loopback port for tests and benchmarks.

Each `PostgresCluster` owns one temporary directory: the data directory that
initdb creates, the Unix socket directory and the server's log all live
there, so nothing touches Debian's own `15/main` cluster, /etc/postgresql or
/var/run/postgresql.  The cluster trusts every local connection (it listens
on 127.0.0.1 only and lives for one test run), and `create_database` hands
each test a database of its own as a SQLAlchemy URL for psycopg 3.

PostgreSQL refuses to run as root, so when the tests run as root (as CI
does) initdb and pg_ctl run as the unprivileged `postgres` user that
Debian's package creates, and the directory is given to that user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from inboxd.testing.ports import free_port

# The unprivileged user the server runs as when we are root.
SERVER_USER = "postgres"
# The cluster's superuser: the role every test database belongs to.
ROLE = "inboxd"


class PostgresError(RuntimeError):
    """The cluster could not be created, started or used."""


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed.

    $INBOXD_PG_BIN wins; then Debian's versioned directories, newest first
    (Debian keeps the server programs off PATH); then whatever PATH has,
    followed through symlinks to the real directory.
    """
    candidates: list[Path] = []
    if os.environ.get("INBOXD_PG_BIN"):
        candidates.append(Path(os.environ["INBOXD_PG_BIN"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


# Clusters still running, stopped at interpreter exit so no server outlives the tests.
_LIVE: set["PostgresCluster"] = set()


@atexit.register
def _kill_leftovers() -> None:
    for cluster in list(_LIVE):
        cluster.kill()


class PostgresCluster:
    """One private PostgreSQL server and the temporary directory it owns.

    Use it as a context manager: entering creates and starts the cluster,
    leaving stops it and removes the directory.
    """

    def __init__(self, bin_dir: Path | None = None, host: str = "127.0.0.1") -> None:
        found = bin_dir or find_binaries()
        if found is None:
            raise PostgresError("PostgreSQL's initdb and pg_ctl were not found; install Debian's postgresql "
                                "(scripts/bootstrap does) or set INBOXD_PG_BIN")
        self.bin_dir = Path(found)
        self.host = host
        self.port = 0
        self.root: Path | None = None
        self._databases = 0
        # Seconds the last start took (initdb excluded), for benchmarks and reports.
        self.start_seconds = 0.0
        self.initdb_seconds = 0.0

    def __repr__(self) -> str:
        return f"<PostgresCluster {self.host}:{self.port} root={self.root}>"

    def __enter__(self) -> "PostgresCluster":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, read from its pid file (None when it is not running)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError, AssertionError):
            return None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Create the cluster in a new temporary directory and start it on a free port."""
        if self.root is not None:
            return
        self.root = Path(tempfile.mkdtemp(prefix="inboxd-postgres-"))
        try:
            self._initdb()
            self._start_on_a_free_port()
        except BaseException:
            self._remove()
            raise

    def stop(self) -> None:
        """A fast shutdown (open sessions are ended), as an administrator would; idempotent."""
        if self.root is None:
            return
        if self.pid is not None:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop", check=False)
        self.kill()

    def kill(self) -> None:
        """Stop whatever is left at once (SIGQUIT is PostgreSQL's immediate shutdown) and remove the directory."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._remove()

    def _remove(self) -> None:
        _LIVE.discard(self)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _initdb(self) -> None:
        assert self.root is not None
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            # The server's user must own everything it writes and be able to reach the directory.
            server = pwd.getpwnam(SERVER_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, server.pw_uid, server.pw_gid)
        self.root.chmod(0o700)
        started = time.monotonic()
        # No locale: sorting and case rules are the same on every machine, and
        # initdb does not depend on which locales the machine has generated.
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", ROLE, "--no-sync",
                  "-E", "UTF8", "--no-locale")
        self.initdb_seconds = time.monotonic() - started

    def _start_on_a_free_port(self) -> None:
        for _attempt in range(5):
            self.port = free_port(self.host)
            options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} -c fsync=off"
                       " -c synchronous_commit=off -c full_page_writes=off")
            started = time.monotonic()
            result = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
                               "-w", "-t", "60", "start", check=False)
            if result.returncode == 0:
                self.start_seconds = time.monotonic() - started
                _LIVE.add(self)
                return
            # Another process took the port between choosing and binding it: choose again.
            if "could not bind" not in self.log_tail() and "already in use" not in self.log_tail():
                raise PostgresError(f"pg_ctl start failed ({result.returncode}): {result.stdout}{result.stderr}\n"
                                    f"{self.log_tail()}")
        raise PostgresError(f"no free port for PostgreSQL after 5 attempts:\n{self.log_tail()}")

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        # The server's own directory as the working directory: runuser keeps
        # ours, which the postgres user may not be allowed to enter.
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise PostgresError(f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log, for error messages."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AssertionError):
            return ""

    # -- databases ---------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this cluster, through psycopg 3."""
        return f"postgresql+psycopg://{ROLE}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (named `name`, or the next free "test_N") and return its URL."""
        if name is None:
            self._databases += 1
            name = f"test_{self._databases}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"unsupported database name {name!r}")
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=ROLE, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its parent's wait is missing.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
