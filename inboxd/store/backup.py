"""Take a backup of the store while daemons run, and restore one into an empty store.

A backup is a folder (mode 0700, every file 0600):

- `inboxd.db` (SQLite: a copy made with SQLite's backup API from a pinned
  read snapshot, checked with `PRAGMA integrity_check`) or `inboxd.dump`
  (PostgreSQL: `pg_dump --format=custom --no-owner`, taken from a snapshot
  this module exports, so the counts in the manifest are of exactly what
  was dumped);
- `var/`: the files of `[store] data_dir` (attachments, oversized mail,
  quarantined raw mail), hard-linked when the folder is on the same file
  system (inboxd never rewrites those files in place) and copied otherwise;
- `csat.key`: the survey signing key, when it lives outside data_dir (inside
  it, it is in `var/` already);
- `backup.json`: the manifest (kind of store, schema revision, counts, time).

With a key file, every file but the manifest is encrypted with age
(pyrage, streaming) and named `<name>.age`; the plain copies are removed
before the folder gets its final name.

The database is copied before the files: a file is written before the row
that names it commits, so every file the copied rows name is copied too.

The folder is built under a temporary name next to DEST, its files fsynced,
then renamed into place: a backup that exists is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, MetaData, Sequence, delete, func, inspect, select, text, update
from sqlalchemy.engine import URL, make_url

from inboxd.store.engine import create_store_engine, current_revision, migrate, reading
from inboxd.store.sql import insert_ignore, t
from inboxd.store.tables import TICKET_NUMBER, metadata

log = logging.getLogger("inboxd.store.backup")

FORMAT = 1
MANIFEST = "backup.json"
SQLITE_FILE = "inboxd.db"
DUMP_FILE = "inboxd.dump"
FILES = "var"
KEY_FILE = "csat.key"
# SQLite pages copied per step of the backup API (4 MiB at the default page size).
STEP_PAGES = 1024


class BackupError(Exception):
    """A backup or restore that cannot be done; str() is one line."""


@dataclass(frozen=True)
class BackupReport:
    path: str
    store: str            # "sqlite" | "postgresql"
    schema: str | None    # the Alembic revision of the copied database
    created_at: str       # ISO 8601 UTC
    bytes: int            # the whole folder
    tickets: int
    messages: int
    files: int            # files copied from data_dir (and the key)
    encrypted: bool = False

    def as_json(self) -> dict:
        return asdict(self)


# -- backup -------------------------------------------------------------------------------------


def take_backup(url: str, data_dir: Path, key_file: Path | None, dest: Path, now: datetime,
                encrypt_to: Path | None = None) -> BackupReport:
    """Write a backup of the store at `url` (and its files) to the new folder `dest`; see the module docstring.

    `key_file` is the survey key; `encrypt_to` an age key file to encrypt the backup with.
    """
    dest = Path(dest)
    recipients = _age_key(encrypt_to)[0] if encrypt_to is not None else None
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest}: already exists; a backup goes into a new folder")
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = parent / f".{dest.name}.partial-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(mode=0o700)
    try:
        kind = make_url(url).get_backend_name()
        if kind == "sqlite":
            schema, tickets, messages = _sqlite_backup(_sqlite_path(url), work / SQLITE_FILE)
        elif kind == "postgresql":
            schema, tickets, messages = _pg_backup(url, work / DUMP_FILE)
        else:
            raise BackupError(f"cannot back up a {kind} store (SQLite and PostgreSQL only)")
        files = _copy_tree(Path(data_dir), work / FILES, link=True)
        if key_file is not None and Path(key_file).is_file() and not _inside(Path(key_file), Path(data_dir)):
            _copy_file(Path(key_file), work / KEY_FILE, link=False)
            files += 1
        if recipients is not None:
            _encrypt_tree(work, recipients)
        manifest = {"format": FORMAT, "store": kind, "schema": schema, "created_at": _iso(now),
                    "tickets": tickets, "messages": messages, "files": files,
                    "encryption": "age" if recipients is not None else None}
        _write_private(work / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
        _fsync_tree(work)
        if dest.exists():
            dest.rmdir()
        os.rename(work, dest)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BackupReport(path=str(dest), store=kind, schema=schema, created_at=_iso(now), bytes=_size(dest),
                        tickets=tickets, messages=messages, files=files, encrypted=recipients is not None)


def _sqlite_backup(source: Path, target: Path) -> tuple[str | None, int, int]:
    if not source.is_file():
        raise BackupError(f"no store at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None, timeout=30)
    try:
        # A read transaction pins one snapshot of the WAL store: the backup's
        # steps all copy it (other connections' commits do not restart the
        # copy), and between steps writers are not held up at all.
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            src.backup(dst, pages=STEP_PAGES)
            # The copy is a plain rollback-journal file: one file, nothing beside it.
            dst.execute("PRAGMA journal_mode=DELETE")
            problems = [row[0] for row in dst.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError(f"the copy of {source} fails SQLite's integrity check: {problems[0]}")
            return _sqlite_facts(dst)
        finally:
            dst.close()
            src.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: {exc}") from None
    finally:
        src.close()


def _sqlite_facts(conn: sqlite3.Connection) -> tuple[str | None, int, int]:
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    schema = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] if "alembic_version" in names \
        else None
    counts = [conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] if name in names else 0
              for name in ("ticket", "message")]
    return schema, counts[0], counts[1]


def _pg_backup(url: str, target: Path) -> tuple[str | None, int, int]:
    program = find_pg_tool("pg_dump")
    engine = create_store_engine(url)
    try:
        # The dump reads the snapshot this transaction exports, so the counts
        # below are of exactly what it dumps; writers go on meanwhile.
        with reading(engine) as conn:
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            schema = _revision(conn)
            tickets, messages = _counts(conn)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            _run([program, "--format=custom", "--no-owner", f"--snapshot={snapshot}", f"--file={target}"],
                 make_url(url), "pg_dump")
    finally:
        engine.dispose()
    os.chmod(target, 0o600)
    return schema, tickets, messages


def _counts(conn: Connection) -> tuple[int, int]:
    names = set(inspect(conn).get_table_names())
    tables = metadata.tables
    return tuple(conn.execute(select(func.count()).select_from(tables[name])).scalar_one() if name in names else 0
                 for name in ("ticket", "message"))  # type: ignore[return-value]


def _revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def find_pg_tool(name: str, debian: Path = Path("/usr/lib/postgresql")) -> str:
    """The path of pg_dump or pg_restore: on PATH, else Debian's /usr/lib/postgresql/<version>/bin, newest first."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted((p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True) \
        if debian.is_dir() else []
    for version in versions:
        if (version / "bin" / name).is_file():
            return str(version / "bin" / name)
    raise BackupError(f"{name} not found on PATH or in /usr/lib/postgresql/*/bin; install PostgreSQL's client"
                      " programs (Debian: postgresql-client)")


def _run(argv: list[str], url: URL, what: str) -> None:
    """Run pg_dump or pg_restore against the database `url` names; the password goes in the environment."""
    env = dict(os.environ)
    query = {key: value if isinstance(value, str) else value[-1] for key, value in url.query.items()}
    for var, value in (("PGHOST", query.get("host") or url.host), ("PGPORT", query.get("port") or url.port),
                       ("PGUSER", url.username), ("PGDATABASE", url.database), ("PGSSLMODE", query.get("sslmode"))):
        if value:
            env[var] = str(value)
    # Never on the command line, where `ps` shows it to every user.
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[0] if lines else f'exit status {proc.returncode}'}")


# -- restore ------------------------------------------------------------------------------------


def read_manifest(source: Path) -> dict:
    """The manifest of the backup folder `source`; BackupError when it is not one."""
    path = Path(source) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{source}: not an inboxd backup (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path}: cannot read: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r}, this inboxd reads {FORMAT}")
    return manifest


def restore_backup(source: Path, url: str, data_dir: Path, key_file: Path | None,
                   decrypt_with: Path | None = None) -> BackupReport:
    """Restore the backup folder `source` into the empty store at `url` and `data_dir`, then migrate it to the
    newest schema; BackupError when the store holds any row or the backup is of the other kind of store.

    `key_file` is where the survey key goes; `decrypt_with` the age identity of an encrypted backup.
    """
    source = Path(source)
    manifest = read_manifest(source)
    if manifest.get("encryption"):
        if decrypt_with is None:
            raise BackupError(f"{source} is encrypted (age); give the key with --key-file or [backup] key_file")
        identities = _age_key(decrypt_with)[1]
        if not identities:
            raise BackupError(f"{decrypt_with}: holds only a recipient (age1...), which cannot decrypt;"
                              " give the identity (AGE-SECRET-KEY-1...)")
        Path(data_dir).parent.mkdir(parents=True, exist_ok=True)
        with _decrypted(source, manifest, identities, near=Path(data_dir).parent) as plain:
            report = restore_backup(plain, url, data_dir, key_file)
        return replace(report, path=str(source), bytes=_size(source), encrypted=True)
    kind = make_url(url).get_backend_name()
    shown = make_url(url).render_as_string(hide_password=True)
    if manifest["store"] != kind:
        raise BackupError(f"{source} is a backup of a {manifest['store']} store and store.url is {kind}; restore it"
                          f" into a {manifest['store']} store, then copy it with `inboxd migrate-store`")
    engine = create_store_engine(url)
    try:
        _refuse_non_empty(engine, shown)
        if kind == "sqlite":
            engine.dispose()
            _sqlite_restore(source / SQLITE_FILE, _sqlite_path(url))
        else:
            _drop_empty_schema(engine)
            _run([find_pg_tool("pg_restore"), "--no-owner", "--single-transaction", "--exit-on-error",
                  f"--dbname={make_url(url).database}", str(source / DUMP_FILE)], make_url(url), "pg_restore")
        files = _copy_tree(source / FILES, Path(data_dir), link=False)
        if key_file is not None and (source / KEY_FILE).is_file():
            Path(key_file).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _copy_file(source / KEY_FILE, Path(key_file), link=False)
            files += 1
        migrate(engine)
        with reading(engine) as conn:
            tickets, messages = _counts(conn)
        if (tickets, messages) != (manifest["tickets"], manifest["messages"]):
            raise BackupError(f"restored {tickets} ticket(s) and {messages} message(s), but the backup holds"
                              f" {manifest['tickets']} and {manifest['messages']}")
        schema = current_revision(engine)
    finally:
        engine.dispose()
    return BackupReport(path=str(source), store=kind, schema=schema, created_at=manifest["created_at"],
                        bytes=_size(source), tickets=tickets, messages=messages, files=files)


def _refuse_non_empty(engine: Engine, shown: str) -> None:
    with reading(engine) as conn:
        present = set(inspect(conn).get_table_names())
        for table in metadata.sorted_tables:
            if table.name not in present:
                continue
            count = conn.execute(select(func.count()).select_from(table)).scalar_one()
            if count:
                raise BackupError(f"the store {shown} is not empty (table {table.name} has {count} row(s));"
                                  " restore goes into an empty store only")


def _drop_empty_schema(engine: Engine) -> None:
    """Drop inboxd's (empty, just checked) tables so that pg_restore can create them as the backup has them."""
    with engine.begin() as conn:
        present = MetaData()
        present.reflect(conn, only=[name for name in inspect(conn).get_table_names()
                                    if name in metadata.tables or name == "alembic_version"])
        present.drop_all(conn)
        Sequence(TICKET_NUMBER.name).drop(conn, checkfirst=True)


def _sqlite_restore(backup: Path, target: Path) -> None:
    if not backup.is_file():
        raise BackupError(f"{backup}: missing from the backup")
    src = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target, isolation_level=None, timeout=30)
        try:
            # Through the backup API rather than a file copy: an existing
            # (empty) store with its WAL is overwritten the way SQLite expects.
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{target}: {exc}") from None
    finally:
        src.close()
    os.chmod(target, 0o600)


# -- the scheduled duty's claims -------------------------------------------------------------
#
# Two rows of `duty` per scheduled backup.  ("backup", "after:<the last
# backup's time>") is the claim: its unique key lets one daemon take the
# backup that follows a given one.  ("backup-done", <folder name>) says it
# was taken, and its `at` is the time the next one is counted from.


def last_backup(conn: Connection) -> datetime | None:
    """When the newest scheduled backup was taken, or None."""
    at = conn.execute(select(func.max(t.duty.c.at)).where(t.duty.c.duty == "backup-done")).scalar()
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def claim_backup(conn: Connection, key: str, now: datetime, stale_before: datetime) -> datetime | None:
    """Claim the backup `key`; the claim's time when we hold it, else None.

    A claim older than `stale_before` belongs to a daemon that died during
    its backup: it is taken over by moving its time (compare-and-swap).
    """
    inserted = conn.execute(insert_ignore(conn, t.duty).values(ticket_id=None, duty="backup", key=key, at=now)
                            .returning(t.duty.c.id)).first()
    if inserted is not None:
        return now
    d = t.duty
    taken = conn.execute(update(d).where(d.c.duty == "backup", d.c.key == key, d.c.at < stale_before)
                         .values(at=now))
    return now if taken.rowcount == 1 else None


def release_backup(conn: Connection, key: str, claimed_at: datetime) -> None:
    """Give up our claim after a failed backup, so that the next pass tries again."""
    d = t.duty
    conn.execute(delete(d).where(d.c.duty == "backup", d.c.key == key, d.c.at == claimed_at))


def record_backup(conn: Connection, name: str, now: datetime) -> None:
    """A scheduled backup was taken: the next is due `every` after `now`."""
    conn.execute(insert_ignore(conn, t.duty).values(ticket_id=None, duty="backup-done", key=name, at=now))


def folders(parent: Path) -> list[str]:
    """The names of the folders in `parent` (the scheduled backups among them)."""
    return [path.name for path in parent.iterdir() if path.is_dir() and not path.is_symlink()]


def delete_backup(path: Path) -> None:
    """Delete one backup folder (rotation)."""
    shutil.rmtree(path)


# -- encryption ---------------------------------------------------------------------------------


def _age_key(path: Path) -> tuple[list, list]:
    """(recipients, identities) of an age key file: an identity gives both, a recipient only the first."""
    import pyrage

    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines()]
    except OSError as exc:
        raise BackupError(f"{path}: cannot read the backup key: {exc.strerror or exc}") from None
    keys = [line for line in lines if line and not line.startswith("#")]
    try:
        if len(keys) == 1 and keys[0].startswith("AGE-SECRET-KEY-1"):
            identity = pyrage.x25519.Identity.from_str(keys[0])
            return [identity.to_public()], [identity]
        if len(keys) == 1 and keys[0].startswith("age1"):
            return [pyrage.x25519.Recipient.from_str(keys[0])], []
    except (pyrage.IdentityError, pyrage.RecipientError, ValueError):
        pass
    raise BackupError(f"{path}: not an age key (one line AGE-SECRET-KEY-1... or age1..., as age-keygen writes)")


def _encrypt_tree(root: Path, recipients: list) -> None:
    import pyrage

    for folder, _dirs, names in os.walk(root):
        for name in names:
            plain = Path(folder) / name
            sealed = plain.with_name(name + ".age")
            fd = os.open(sealed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            try:
                pyrage.encrypt_file(str(plain), str(sealed), recipients)
            except pyrage.EncryptError as exc:
                raise BackupError(f"cannot encrypt {plain.name}: {exc}") from None
            plain.unlink()


@contextmanager
def _decrypted(source: Path, manifest: dict, identities: list, near: Path) -> Iterator[Path]:
    """A private temporary plain copy of an encrypted backup, next to the store's files (not in /tmp)."""
    import pyrage

    work = Path(tempfile.mkdtemp(prefix=".inboxd-restore-", dir=near))
    try:
        for folder, _dirs, names in os.walk(source):
            here = work / Path(folder).relative_to(source)
            here.mkdir(parents=True, exist_ok=True, mode=0o700)
            for name in names:
                if not name.endswith(".age"):
                    continue
                plain = here / name[:-len(".age")]
                fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.close(fd)
                try:
                    pyrage.decrypt_file(str(Path(folder) / name), str(plain), identities)
                except pyrage.DecryptError as exc:
                    raise BackupError(f"cannot decrypt {Path(folder) / name}: {exc}"
                                      " (is it the key the backup was taken with?)") from None
        _write_private(work / MANIFEST, json.dumps(manifest | {"encryption": None}).encode())
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- files --------------------------------------------------------------------------------------


def _copy_tree(source: Path, target: Path, *, link: bool) -> int:
    """Copy every file under `source` into `target` (folders 0700, files 0600); how many files."""
    if not source.is_dir():
        return 0
    count = 0
    for folder, dirs, names in os.walk(source):
        dirs.sort()
        here = target / Path(folder).relative_to(source)
        here.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in sorted(names):
            path = Path(folder) / name
            # A temporary file being written now (".csat-key-…", a spool) is not part of the store yet.
            if name.startswith(".") or not path.is_file() or path.is_symlink():
                continue
            _copy_file(path, here / name, link=link)
            count += 1
    return count


def _copy_file(source: Path, target: Path, *, link: bool) -> None:
    if target.exists():
        target.unlink()
    # A link shares the file's mode: only a private file is linked, so every file of a backup is 0600.
    if link and source.stat().st_mode & 0o077 == 0:
        try:
            os.link(source, target)
            return
        except OSError:
            # Another file system (or one without hard links): copy instead.
            pass
    shutil.copyfile(source, target)
    os.chmod(target, 0o600)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            fd = os.open(Path(folder) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(root: Path) -> int:
    return sum((Path(folder) / name).stat().st_size for folder, _dirs, names in os.walk(root) for name in names)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("store.url names no SQLite file")
    return Path(database)


def _iso(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

