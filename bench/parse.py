"""Benchmark and snapshot of the parser worker's work: `parse_message` and `reply_text`.

    .venv/bin/python bench/parse.py [--rounds R] [N]          # timing (default N = 2000)
    .venv/bin/python bench/parse.py --snapshot OUT.json [N]    # every parsed field, as JSON

Timing parses, in this process, the bench corpus of bench/ingest.py
(`corpus(N)`, the mail `inboxd run --once` ingests in bench/ingest.py) and,
separately, every mail of ../shared/corpus (skipped when absent), and prints
CPU milliseconds per message (`time.process_time`, best of R rounds, default
3) for `parse_message` alone, for `reply_text` alone on the parsed bodies,
and for the worker's whole `parse_one` (both, plus saving attachments to a
scratch data_dir).  CPU time, not wall time: other processes on the machine
do not count.  The parser's memo caches are emptied before each round, so a
round is one pass over the corpus, as the worker makes it.

`--snapshot` writes, for every mail of both corpora, every field of the
parsed message (attachments by name, type, size and SHA-256), its reply
text, what the worker's large-mail path makes of it (mail over
LARGE_MESSAGE_BYTES), its bounce and failure-notice verdicts, and
`reply_text` of each corpus file read as plain text (the reply parsers'
fixtures are bodies, not mails).  Diff two snapshots to prove a change to the
parser kept its output: scripts/parse_snapshot does both steps.  The bench
corpus is made deterministic here (a fixed clock and process id for its
Message-IDs and dates), so two runs give the same mail.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import sys
import tempfile
import time
import types
from dataclasses import fields, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import inboxd.testing.mail as testmail  # noqa: E402
from inboxd.mail import message, quotes  # noqa: E402
from bench.ingest import corpus  # noqa: E402
from inboxd.mail.bounces import detect_bounce, notice_reason  # noqa: E402
from inboxd.mail.largemail import LARGE_MESSAGE_BYTES, parse_large  # noqa: E402
from inboxd.mail.message import MalformedMessage, parse_message  # noqa: E402
from inboxd.mail.quotes import reply_text  # noqa: E402
from inboxd.sync.worker import parse_one  # noqa: E402
from inboxd.testing import threadcheck  # noqa: E402

CORPUS = ROOT / ".." / "shared" / "corpus"
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
# Files of the corpus that are no mail and no body.
_NOT_MAIL = (".json", ".gz", ".md", ".gitattributes", ".html")


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)


def bench_corpus(n: int) -> list[bytes]:
    """bench/ingest.py's corpus(n), the same bytes in every run."""
    with mock.patch.object(testmail, "datetime", _FixedClock), \
            mock.patch.object(testmail, "os", types.SimpleNamespace(getpid=lambda: 4242)), \
            mock.patch.object(testmail, "_counter", itertools.count(1)):
        return corpus(n)


def shared_corpus() -> list[tuple[str, bytes]]:
    """Every file of ../shared/corpus that may be a mail, and the threading archive's messages."""
    if not CORPUS.is_dir():
        return []
    found = [(str(p.relative_to(CORPUS)), p.read_bytes()) for p in sorted(CORPUS.rglob("*"))
             if p.is_file() and not p.name.endswith(_NOT_MAIL) and p.name not in ("SOURCE_COMMIT", "README", "COPYING")]
    if (CORPUS / threadcheck.MBOX).is_file():
        archive = threadcheck.archive_messages(CORPUS)
        found += [(f"{threadcheck.MBOX}#{i}", raw) for i, raw in enumerate(archive)]
        broken, _ = threadcheck.broken_variant(archive)
        found += [(f"{threadcheck.MBOX}#broken{i}", raw) for i, raw in enumerate(broken)]
    return found


def _plain(value):
    """`value` as JSON data: dataclasses field by field, bytes by hash and length."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    return value


def snapshot_one(raw: bytes, scratch: Path) -> dict:
    out: dict = {}
    try:
        msg = parse_message(raw, max_attachment_bytes=MAX_ATTACHMENT_BYTES)
    except MalformedMessage as exc:
        out["malformed"] = str(exc)
        msg = None
    if msg is not None:
        out["message"] = _plain(msg)
        out["reply_text"] = reply_text(msg.text)
        out["notice_reason"] = notice_reason(msg)
    out["bounce"] = _plain(detect_bounce(raw, msg))
    if len(raw) > LARGE_MESSAGE_BYTES:
        try:
            out["large"] = _plain(parse_large(raw, MAX_ATTACHMENT_BYTES, scratch))
        except MalformedMessage as exc:
            out["large"] = {"malformed": str(exc)}
    worker = parse_one(raw, MAX_ATTACHMENT_BYTES, scratch)
    out["worker"] = _plain(worker) if not isinstance(worker, MalformedMessage) else {"malformed": str(worker)}
    return out


def snapshot(path: Path, n: int) -> None:
    result: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for i, raw in enumerate(bench_corpus(n)):
            result[f"bench#{i}"] = snapshot_one(raw, scratch)
        for name, raw in shared_corpus():
            result[f"corpus:{name}"] = snapshot_one(raw, scratch)
            result[f"corpus:{name}"]["as_body"] = reply_text(raw.decode("utf-8", "replace"))
        files = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*") if p.is_file())
        result["saved_files"] = {"files": files}
    # Bytes in a JSON file are not valid text; encode anything odd reversibly.
    path.write_text(json.dumps(result, ensure_ascii=True, sort_keys=True, indent=1, default=_default))


def _default(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return repr(value)


def _clear_caches() -> None:
    """Empty the parser's memo caches, so each round is one pass as the worker makes it."""
    for module in (message, quotes):
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


def _cpu_ms(fn, items, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        _clear_caches()
        start = time.process_time()
        for item in items:
            fn(item)
        best = min(best, time.process_time() - start)
    return best * 1000 / max(len(items), 1)


def timing(n: int, rounds: int) -> None:
    sets = [("bench corpus", bench_corpus(n))]
    shared = [raw for _, raw in shared_corpus()]
    if shared:
        sets.append(("shared corpus", shared))
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for label, raws in sets:
            small = [raw for raw in raws if len(raw) <= LARGE_MESSAGE_BYTES]

            def parse(raw: bytes) -> None:
                try:
                    parse_message(raw, max_attachment_bytes=MAX_ATTACHMENT_BYTES)
                except MalformedMessage:
                    pass

            texts = []
            for raw in small:
                try:
                    texts.append(parse_message(raw, max_attachment_bytes=MAX_ATTACHMENT_BYTES).text)
                except MalformedMessage:
                    pass
            p = _cpu_ms(parse, small, rounds)
            r = _cpu_ms(reply_text, texts, rounds)
            w = _cpu_ms(lambda raw: parse_one(raw, MAX_ATTACHMENT_BYTES, scratch), small, rounds)
            print(f"{label} ({len(small)} mails up to {LARGE_MESSAGE_BYTES // 2**20} MiB): parse_message "
                  f"{p:.3f} ms/msg, reply_text {r:.3f} ms/msg, worker parse_one {w:.3f} ms/msg "
                  f"(CPU, best of {rounds})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--snapshot", type=Path)
    args = ap.parse_args()
    if args.snapshot:
        snapshot(args.snapshot, args.n)
        print(f"wrote {args.snapshot}")
    else:
        timing(args.n, args.rounds)


if __name__ == "__main__":
    main()
