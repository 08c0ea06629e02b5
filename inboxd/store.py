"""The store as the pollers see it: checkpoints in, batches filed.

Parsing is the slow part of ingest, so batches are parsed in a worker process
as soon as they are fetched, while the previous batch is being written; with
two cores, fetch and write share one and parsing has the other.  A worker
that cannot be started (or a batch too small to be worth it) is parsed in
the filing thread instead: the result is the same, only slower.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import Engine

from inboxd.config import Settings
from inboxd.db import reading, writing
from inboxd.ingest import (Batch, BatchResult, Filer, FolderCheckpoint, begin_folder, read_checkpoint,
                           set_folder_state)
from inboxd.worker import parse_many

log = logging.getLogger("inboxd.store")

# Below this many messages a batch is parsed inline: the round trip to the
# worker process costs more than it saves.
MIN_BATCH_FOR_WORKER = 8


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreSink:
    """Implements the pollers' BatchSink over one engine."""

    def __init__(self, engine: Engine, settings: Settings, *, workers: int = 1,
                 clock: Callable[[], datetime] = utcnow):
        self.engine = engine
        self.settings = settings
        self.filer = Filer(settings)
        self.clock = clock
        # Who holds the folders this sink syncs, as `inboxd status` shows it.
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        # Set when something was filed, so the sender looks at the outbox now.
        self.nudge = threading.Event()
        self.max_attachment = settings.store.max_attachment_bytes
        self.pool: ProcessPoolExecutor | None = None
        if workers > 0:
            # "spawn" keeps the worker free of the parent's threads and sockets.
            self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def checkpoint(self, mailbox: str, folder: str) -> FolderCheckpoint | None:
        with reading(self.engine) as conn:
            return read_checkpoint(conn, mailbox, folder)

    def begin_folder(self, mailbox: str, folder: str, uidvalidity: int, history_before: datetime) -> None:
        with writing(self.engine) as conn:
            begin_folder(conn, mailbox, folder, uidvalidity, history_before, self.clock())

    def folder_state(self, mailbox: str, folder: str, error: str | None, now: datetime) -> None:
        try:
            with writing(self.engine) as conn:
                set_folder_state(conn, mailbox, folder, error, now, self.owner)
        except Exception:  # Health bookkeeping never stops a sync.
            log.warning("could not record the state of %s/%s", mailbox, folder, exc_info=True)

    def prepare(self, batch: Batch) -> Future | None:
        if self.pool is None or len(batch.messages) < MIN_BATCH_FOR_WORKER:
            return None
        return self.pool.submit(parse_many, [m.raw for m in batch.messages], self.max_attachment, self.settings.store.data_dir)

    def file(self, batch: Batch, prepared: Future | None) -> BatchResult:
        parsed = prepared.result() if prepared is not None else None
        with writing(self.engine) as conn:
            result = self.filer.file_batch(conn, batch, self.clock(), parsed)
        if result.filed:
            # Filing may have queued mail (acknowledgements, relays).
            self.nudge.set()
        return result

    def pending_copies(self, mailbox: str) -> list[tuple[int, bytes]]:
        with reading(self.engine) as conn:
            return [tuple(r) for r in conn.exec_driver_sql(
                "SELECT id, data FROM outbox WHERE mailbox = ? AND status = 'sent' AND copy_status = 'pending'"
                " ORDER BY id LIMIT 100", (mailbox,))]

    def copy_done(self, outbox_id: int) -> None:
        with writing(self.engine) as conn:
            conn.exec_driver_sql("UPDATE outbox SET copy_status = 'done' WHERE id = ?", (outbox_id,))
