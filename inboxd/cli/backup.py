"""`inboxd backup DEST` and `inboxd restore SRC`: the store's copy on demand, and putting one back.

The work is in `inboxd.store.backup`; these commands resolve the config's
store, data_dir and survey key, and print what was written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

import typer

from inboxd.cli.main import JsonOpt, UserError, _ctx, _print_json, app

KeyOpt = typer.Option(None, "--key-file", metavar="PATH",
                      help="An age key file (default: [backup] key_file): backup encrypts to it, restore decrypts.")


def _key(settings, given: Path | None) -> Path | None:
    if given is not None:
        return given.absolute()
    return settings.backup.key_file if settings.backup is not None else None


@app.command("backup")
def backup(ctx: typer.Context,
           dest: Path = typer.Argument(..., metavar="DEST", help="A new folder to write the backup to."),
           key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Copy the store (while daemons run), its files and the survey key into the new folder DEST."""
    from inboxd.store.backup import BackupError, take_backup

    _ctx(ctx).require_owner("backup")
    settings = _ctx(ctx).settings
    try:
        report = take_backup(settings.store.url, settings.store.data_dir, settings.policies.csat.secret_file,
                             dest.absolute(), datetime.now(UTC), encrypt_to=_key(settings, key_file))
    except BackupError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"backup: {exc.filename or dest}: {exc.strerror or exc}") from None
    if as_json:
        _print_json(report.as_json())
        return
    sealed = ", encrypted with age" if report.encrypted else ""
    typer.echo(f"wrote {report.path} ({report.store}, schema {report.schema}, {_size(report.bytes)}{sealed}):"
               f" {report.tickets} ticket(s), {report.messages} message(s), {report.files} file(s)")


@app.command("restore")
def restore(ctx: typer.Context,
            source: Path = typer.Argument(..., metavar="SRC", help="A folder written by `inboxd backup`."),
            key_file: Optional[Path] = KeyOpt, as_json: bool = JsonOpt) -> None:
    """Restore a backup into the config's store, which must be empty, then migrate it to the newest schema."""
    from sqlalchemy.exc import DBAPIError

    from inboxd.store.backup import BackupError, restore_backup

    _ctx(ctx).require_owner("restore")
    settings = _ctx(ctx).settings
    try:
        report = restore_backup(source.absolute(), settings.store.url, settings.store.data_dir,
                                settings.policies.csat.secret_file, decrypt_with=_key(settings, key_file))
    except BackupError as exc:
        raise UserError(str(exc)) from None
    except DBAPIError as exc:
        text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        raise UserError(f"restore: {text}") from None
    except OSError as exc:
        raise UserError(f"restore: {exc.filename or source}: {exc.strerror or exc}") from None
    if as_json:
        _print_json(report.as_json())
        return
    typer.echo(f"restored {report.path} (taken {report.created_at}) into the store, now at schema {report.schema}:"
               f" {report.tickets} ticket(s), {report.messages} message(s), {report.files} file(s)")


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"
