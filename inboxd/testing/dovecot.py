"""Run a private Dovecot IMAP server on loopback ports for tests and the demo.

Each `Dovecot` owns one directory: its config, runtime sockets, logs, TLS
certificate, passwd-file and users' Maildirs all live there, so nothing reads
or writes /etc/dovecot or /var/run/dovecot.  The helpers that put mail in or
look at it use the stdlib `imaplib`, because only inboxd/sync/imap.py may import
imapclient.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import imaplib
import os
import pwd
import re
import secrets
import signal
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from inboxd.testing.ports import free_port

DOVECOT_BINARY = Path(os.environ.get("INBOXD_DOVECOT", "/usr/sbin/dovecot"))

# Dovecot refuses to give mail access to root, so every mailbox belongs to this user.
MAIL_USER = "nobody"

# The internal user whose login proves the server is ready; it never holds mail.
_PROBE_USER = "inboxd-probe"

_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_STATUS_ITEM = re.compile(rb"(MESSAGES|UIDVALIDITY|UIDNEXT) (\d+)")

_CONFIG = """\
# Written by inboxd.testing.dovecot: a private instance that shares nothing
# with the system's /etc/dovecot.
protocols = imap
listen = {host}
# Process titles name each session's user and current command, so tests can
# see a client waiting in IDLE (Dovecot.idling) instead of sleeping.
verbose_proctitle = yes
base_dir = {run_dir}
state_dir = {state_dir}
instance_name = {instance}
log_path = {log_dir}/dovecot.log
info_log_path = {log_dir}/info.log

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2

# Tests log in over the plain port too.
disable_plaintext_auth = no
auth_mechanisms = plain login
# Answer a wrong password quickly (Dovecot still batches failures every 0.5 s),
# so failure tests stay fast.
auth_failure_delay = 0
# One passwd-file per user: Dovecot stats a passwd-file at most once a
# second, so users added to one shared file could stay unknown for a second.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users_dir}/%u
}}

# Mail belongs to an unprivileged user because Dovecot refuses root.
mail_location = maildir:~/Maildir
mail_uid = {mail_uid}
mail_gid = {mail_gid}
mail_privileged_group = {mail_group}
first_valid_uid = {mail_uid}
last_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
last_valid_gid = {mail_gid}
# Test mail is disposable, and fsync makes bulk appends slow.
mail_fsync = never

namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
}}

protocol imap {{
  # A daemon under test holds an IDLE connection per folder plus helpers.
  mail_max_userip_connections = 200
}}

# Without this socket there is no auth penalty: otherwise a few wrong
# passwords slow every later login from 127.0.0.1 by up to 15 s.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {ssl_port}
    ssl = yes
  }}
}}
"""


class DovecotError(RuntimeError):
    """The server could not be started or an IMAP helper action failed."""


class _PortTaken(DovecotError):
    """A chosen port was bound by someone else between choosing and starting."""


# Instances still running, killed at interpreter exit so no dovecot outlives the tests.
_LIVE: set["Dovecot"] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.kill()


class Dovecot:
    """One private Dovecot master process and the directory it owns."""

    def __init__(self, root: Path, binary: Path = DOVECOT_BINARY, extra_config: str = "") -> None:
        self.root = Path(root).resolve()
        self.binary = Path(binary)
        # Appended to the generated dovecot.conf (e.g. the acl plugin for a
        # folder that refuses keywords); empty by default.
        self.extra_config = extra_config
        self.host = "127.0.0.1"
        self.port = 0
        self.ssl_port = 0
        self.ca_file = self.root / "tls" / "cert.pem"
        self._key_file = self.root / "tls" / "key.pem"
        self._conf = self.root / "dovecot.conf"
        self._users_dir = self.root / "users"
        self._log_dir = self.root / "log"
        self._home_dir = self.root / "home"
        self._proc: subprocess.Popen[bytes] | None = None
        # Where this start's output begins in log/stdio.log (starts append to it).
        self._stdio_offset = 0
        self._passwords: dict[str, str] = {}
        self._prepared = False

    def __repr__(self) -> str:
        return f"<Dovecot {self.host}:{self.port}/{self.ssl_port} root={self.root}>"

    def __enter__(self) -> "Dovecot":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and return once a login works.

        Ports are chosen on the first start and kept afterwards, so clients
        configured with them can reconnect after a restart.  A port stolen
        between choosing and binding is replaced by another on first start.
        """
        if self.running:
            return
        if not self.binary.exists():
            raise DovecotError(f"{self.binary} is missing: install Debian's dovecot-imapd")
        self._prepare()
        # A master that died on its own may have left children behind.
        self._reap()
        first_start = self.port == 0
        for _attempt in range(5 if first_start else 1):
            if first_start:
                self.port, self.ssl_port = _two_free_ports(self.host)
            self._write_config()
            self._spawn()
            try:
                self._wait_until_ready(timeout=15)
                return
            except _PortTaken:
                self._reap()
                if not first_start:
                    raise
            except BaseException:
                self._reap()
                raise
        self.port = self.ssl_port = 0
        raise DovecotError(f"no free ports for Dovecot after 5 attempts; see {self._log_dir}")

    def stop(self) -> None:
        """Stop with SIGTERM and wait, as an administrator would; idempotent."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the master and all its children, like a crash or a cut cable."""
        if self._proc is not None:
            self._reap()

    def _spawn(self) -> None:
        stdio = open(self._log_dir / "stdio.log", "ab")
        self._stdio_offset = stdio.tell()
        try:
            # A new session makes the master a process-group leader, so its
            # children (imap, auth, login...) can all be killed by group.
            self._proc = subprocess.Popen(
                [str(self.binary), "-F", "-c", str(self._conf)],
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            stdio.close()
        _LIVE.add(self)

    def _reap(self) -> None:
        """Kill whatever is left of the process group and wait for the master."""
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # Children orphaned by the master's death may still be running; wait
        # until only zombies are left (init reaps those, sometimes slowly).
        deadline = time.monotonic() + 5
        while _live_members(proc.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.01)

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            # The master reports a failed bind on stderr but takes about 2 s to
            # exit, so its output is read rather than waiting for the exit.
            output = self._startup_output()
            if "Address already in use" in output:
                raise _PortTaken(output)
            if self._proc.poll() is not None or "Fatal:" in output:
                raise DovecotError(f"dovecot failed to start:\n{output}\n{self.log_tail()}")
            try:
                # A short timeout: a squatter on our port may accept and never greet.
                with self._login(_PROBE_USER, timeout=0.5):
                    return
            except (OSError, imaplib.IMAP4.error):
                if time.monotonic() > deadline:
                    raise DovecotError(f"dovecot not ready after {timeout}s:\n{self.log_tail()}")
                time.sleep(0.02)

    def _startup_output(self) -> str:
        with open(self._log_dir / "stdio.log", "rb") as stdio:
            stdio.seek(self._stdio_offset)
            return stdio.read().decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's logs, for error messages."""
        out = []
        for name in ("stdio.log", "dovecot.log"):
            path = self._log_dir / name
            if path.exists():
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    # -- files -----------------------------------------------------------

    def _prepare(self) -> None:
        """Create the directory layout, the certificate and the probe user once."""
        if self._prepared:
            return
        if os.geteuid() != 0:
            raise DovecotError("the private Dovecot runs as root (as CI does), so it can drop to 'nobody'")
        for path in (self.root, self.root / "state", self._log_dir, self._home_dir, self.ca_file.parent):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o711)
        # Dovecot wants its base_dir world-readable (login processes find sockets there).
        (self.root / "run").mkdir(mode=0o755, exist_ok=True)
        _check_traversable(self.root.parent)
        self._make_certificate()
        self._users_dir.mkdir(mode=0o755, exist_ok=True)
        self._prepared = True
        self.add_user(_PROBE_USER, secrets.token_hex(16))

    def _make_certificate(self) -> None:
        if self.ca_file.exists():
            return
        # An EC key is generated in milliseconds; the SAN makes hostname checks pass for 127.0.0.1.
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "3650", "-subj", f"/CN={self.host}",
             "-addext", f"subjectAltName=IP:{self.host}",
             "-keyout", str(self._key_file), "-out", str(self.ca_file)],
            check=True, capture_output=True,
        )
        self._key_file.chmod(0o600)
        self.ca_file.chmod(0o644)

    def _write_config(self) -> None:
        mail = pwd.getpwnam(MAIL_USER)
        self._conf.write_text(_CONFIG.format(
            host=self.host, port=self.port, ssl_port=self.ssl_port,
            run_dir=self.root / "run", state_dir=self.root / "state", log_dir=self._log_dir,
            instance=f"inboxd-test-{self.port}", cert=self.ca_file, key=self._key_file,
            users_dir=self._users_dir, mail_uid=mail.pw_uid, mail_gid=mail.pw_gid,
            mail_group=_group_name(mail.pw_gid),
        ) + self.extra_config)

    def _write_user(self, user: str, password: str) -> None:
        mail = pwd.getpwnam(MAIL_USER)
        line = f"{user}:{{PLAIN}}{password}:{mail.pw_uid}:{mail.pw_gid}::{self._home_dir / user}::\n"
        # Create the file in one step, so a login racing with us never reads half of it.
        tmp = self._users_dir / f".{user}.tmp"
        tmp.write_text(line)
        tmp.chmod(0o644)
        tmp.replace(self._users_dir / user)

    # -- users and mail --------------------------------------------------

    def add_user(self, user: str, password: str = "secret") -> None:
        """Create a user with an empty Maildir; works while the server runs."""
        if not re.fullmatch(r"[A-Za-z0-9._@+-]+", user):
            raise ValueError(f"unsupported user name {user!r}")
        if ":" in password or "\n" in password:
            raise ValueError("a password may not contain ':' or a newline")
        if user in self._passwords:
            raise ValueError(f"user {user!r} already exists")
        self._prepare()
        mail = pwd.getpwnam(MAIL_USER)
        home = self._home_dir / user
        for path in (home, home / "Maildir"):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, mail.pw_uid, mail.pw_gid)
        self._write_user(user, password)
        self._passwords[user] = password

    @contextlib.contextmanager
    def _login(self, user: str, timeout: float = 30) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4(self.host, self.port, timeout=timeout)
        try:
            imap.login(user, self._passwords[user])
            yield imap
        except BaseException:
            imap.shutdown()
            raise
        imap.logout()

    def create_folder(self, user: str, folder: str) -> None:
        """Create a folder; one that already exists (e.g. Sent) is left as it is."""
        with self._login(user) as imap:
            typ, data = imap.create(_quote(folder))
            if typ != "OK" and b"ALREADYEXISTS" not in data[0]:
                raise DovecotError(f"CREATE {folder!r} for {user}: {data!r}")

    def delete_folder(self, user: str, folder: str) -> None:
        """Delete a folder and its mail, so recreating it gets a new UIDVALIDITY."""
        with self._login(user) as imap:
            _check(imap.delete(_quote(folder)), f"DELETE {folder!r} for {user}")

    def append(self, user: str, folder: str, raw: bytes, flags: tuple[str, ...] = (),
               when: datetime | None = None) -> int:
        """Append one message and return its UID (from APPENDUID)."""
        with self._login(user) as imap:
            return _append(imap, folder, raw, flags, when)

    def append_many(self, user: str, folder: str, raws: Iterable[bytes | tuple[bytes, datetime]],
                    batch: int = 500) -> None:
        """Append many messages over one connection, `batch` per MULTIAPPEND command.

        One APPEND per message costs a round trip and a uidlist update each
        (about 2.4 ms); MULTIAPPEND with non-synchronizing literals (RFC 3502,
        RFC 7888) stores 1,000 messages in about 0.1 s.  An item may be
        (raw, when) to give the message that INTERNALDATE.
        """
        with self._login(user) as imap:
            chunk: list[bytes] = []
            for raw in raws:
                chunk.append(raw)
                if len(chunk) >= batch:
                    _multiappend(imap, folder, chunk)
                    chunk = []
            if chunk:
                _multiappend(imap, folder, chunk)

    def idling(self, user: str) -> int:
        """How many of `user`'s IMAP sessions are waiting in IDLE right now.

        Read from the session processes' titles ("imap [user 127.0.0.1 IDLE]"),
        which Dovecot updates as each command starts and ends.
        """
        if self._proc is None:
            return 0
        wanted = f"/imap [{user} ".encode()
        count = 0
        for pid in _live_members(self._proc.pid):
            with contextlib.suppress(OSError):
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
                count += wanted in title and title.endswith(b" IDLE]")
        return count

    def uidvalidity(self, user: str, folder: str) -> int:
        return self._status(user, folder)["UIDVALIDITY"]

    def message_count(self, user: str, folder: str) -> int:
        return self._status(user, folder)["MESSAGES"]

    def _status(self, user: str, folder: str) -> dict[str, int]:
        with self._login(user) as imap:
            data = _check(imap.status(_quote(folder), "(MESSAGES UIDVALIDITY UIDNEXT)"),
                          f"STATUS {folder!r} for {user}")
        return {key.decode(): int(value) for key, value in _STATUS_ITEM.findall(data[0])}

    def fetch_flags(self, user: str, folder: str) -> dict[int, tuple[str, ...]]:
        """Map each UID to its flags, read without changing any.

        EXAMINE opens the folder read-only, and \\Recent is left out because
        it describes the session, not the message.
        """
        with self._login(user) as imap:
            _check(imap.select(_quote(folder), readonly=True), f"EXAMINE {folder!r} for {user}")
            data = _check(imap.uid("FETCH", "1:*", "(FLAGS)"), f"FETCH FLAGS in {folder!r}")
        flags: dict[int, tuple[str, ...]] = {}
        for item in data:
            # An empty folder answers with no items (imaplib gives [None]).
            if not isinstance(item, bytes):
                continue
            uid, found = _FETCH_UID.search(item), _FETCH_FLAGS.search(item)
            if uid and found:
                names = found.group(1).decode().split()
                flags[int(uid.group(1))] = tuple(f for f in names if f != "\\Recent")
        return flags


def _append(imap: imaplib.IMAP4, folder: str, raw: bytes, flags: tuple[str, ...],
            when: datetime | None) -> int:
    flag_list = f"({' '.join(flags)})" if flags else None
    date = imaplib.Time2Internaldate(when if when is not None else datetime.now(timezone.utc))
    data = _check(imap.append(_quote(folder), flag_list, date, raw), f"APPEND to {folder!r}")
    match = _APPENDUID.search(data[0])
    if not match:
        raise DovecotError(f"APPEND to {folder!r} returned no APPENDUID: {data!r}")
    return int(match.group(2))


def _multiappend(imap: imaplib.IMAP4, folder: str, raws: list[bytes | tuple[bytes, datetime]]) -> None:
    # imaplib has no MULTIAPPEND, so the command is written and read by hand
    # with a tag of our own; nothing else is in flight on this connection.
    tag = b"MA" + secrets.token_hex(3).encode()
    parts = [tag, b" APPEND ", _quote(folder).encode()]
    for item in raws:
        raw, when = item if isinstance(item, tuple) else (item, None)
        if when is not None:
            parts.append(b" " + imaplib.Time2Internaldate(when).encode())
        literal = re.sub(rb"\r?\n", b"\r\n", raw)
        parts.append(b" {%d+}\r\n" % len(literal))
        parts.append(literal)
    parts.append(b"\r\n")
    imap.send(b"".join(parts))
    while True:
        line = imap.readline()
        if not line:
            raise DovecotError(f"connection closed during MULTIAPPEND to {folder!r}")
        if line.startswith(tag + b" "):
            break
    if not line.startswith(tag + b" OK"):
        raise DovecotError(f"MULTIAPPEND to {folder!r} failed: {line!r}")


def _check(response: tuple[str, list], action: str) -> list:
    typ, data = response
    if typ != "OK":
        raise DovecotError(f"{action} failed: {data!r}")
    return data


def _quote(folder: str) -> str:
    """Quote a folder name as an IMAP string; imaplib sends arguments verbatim."""
    if not folder.isascii():
        raise ValueError(f"non-ASCII folder names are not supported here: {folder!r}")
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _two_free_ports(host: str) -> tuple[int, int]:
    port = free_port(host)
    ssl_port = free_port(host)
    while ssl_port == port:
        ssl_port = free_port(host)
    return port, ssl_port


def _group_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name


def _live_members(pgid: int) -> list[int]:
    """PIDs in process group `pgid` that are not zombies (read from /proc)."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name may contain spaces and parentheses, so split after the last ')'.
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat_file.parent.name))
    return members


def _check_traversable(path: Path) -> None:
    """Fail early unless Dovecot's unprivileged processes can reach the root.

    pytest's tmp_path will not do: it lives under a 0700 directory, which
    pytest resets to 0700 whenever another pytest run starts.
    """
    for directory in (path, *path.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise DovecotError(
                f"{directory} is not world-traversable (o+x), so Dovecot's mail and auth users "
                "cannot reach the instance directory; use one under /tmp (tempfile.mkdtemp())"
            )


def oauth2_config(root: Path, introspection_url: str) -> str:
    """Extra dovecot.conf (for `Dovecot(extra_config=...)`) that also signs users in with OAuth2.

    XOAUTH2 and OAUTHBEARER go to an oauth2 passdb, which asks
    `introspection_url` (RFC 7662, POST token=...) whether the bearer token
    is active and whose it is; password logins work as before.  The passdb's
    settings file is written into `root`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    args = root / "dovecot-oauth2.conf.ext"
    args.write_text(
        "introspection_mode = post\n"
        f"introspection_url = {introspection_url}\n"
        "username_attribute = email\n"
        "active_attribute = active\n"
        "active_value = true\n"
        "force_introspection = yes\n"
    )
    args.chmod(0o644)
    return f"""
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {args}
}}
"""
