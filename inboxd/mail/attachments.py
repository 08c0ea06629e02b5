"""Attachment content on disk under data_dir, addressed by its SHA-256."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def attachment_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / "attachments" / sha256[:2] / sha256


def save_attachment(data_dir: Path, sha256: str, content: bytes) -> None:
    """Write `content` once; safe to repeat and to run before the commit.

    The file is written under a temporary name and renamed, so a crash leaves
    at worst an unreferenced file, never a half-written one under its final
    name; and the same content is only ever stored once.
    """
    path = attachment_path(data_dir, sha256)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
