"""Threading against the union of References/In-Reply-To, on a mailing-list archive.

    .venv/bin/python bench/threads.py [SHUFFLES]

Files the 292 messages of ../shared/corpus/rth+jwzthreading through the real
pipeline (Filer.file_batch on a fresh SQLite store, two folders, one
message per batch) in archive order, reversed and SHUFFLES shuffled orders
(default 3), and prints for each: recall (the share of message pairs the
headers connect that share a ticket), false joins (pairs on one ticket the
headers keep apart), tickets against conversations, and the filing time.
It does the same for three "broken" versions of the archive
(threadcheck.broken_variant: In-Reply-To only, cut References, bare and
free-text ids, lost parents, repeated Message-IDs), and prints how the
reference compares with the archive's own thread index.
tests/test_thread_corpus.py asserts the plain archive's figures.
"""

from __future__ import annotations

import logging
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inboxd.config import load_settings  # noqa: E402
from inboxd.testing import threadcheck  # noqa: E402

CORPUS = ROOT / ".." / "shared" / "corpus"


def orders(n: int, shuffles: int) -> dict[str, list[int]]:
    out = {"archive": list(range(n)), "reversed": list(range(n))[::-1]}
    for seed in range(1, shuffles + 1):
        order = list(range(n))
        random.Random(seed).shuffle(order)
        out[f"shuffled {seed}"] = order
    return out


def run(label: str, raws: list[bytes], reference: list[int], shuffles: int) -> None:
    print(f"\n{label}: {len(raws)} messages, {len(set(reference))} conversations")
    for name, order in orders(len(raws), shuffles).items():
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(threadcheck.offline_config(Path(tmp)))
            start = time.perf_counter()
            got = threadcheck.file_in_order(settings, raws, order)
            took = time.perf_counter() - start
        print(f"  {threadcheck.score(reference, got).line(name)}  {took:.1f} s")


def main() -> None:
    shuffles = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    if not (CORPUS / threadcheck.MBOX).is_file():
        sys.exit(f"no corpus at {CORPUS}")
    # The repeated Message-IDs of the broken versions are logged as warnings.
    logging.disable(logging.WARNING)
    raws = threadcheck.archive_messages(CORPUS)
    reference = threadcheck.reference_labels(raws)
    index = threadcheck.expected_labels(CORPUS, len(raws))
    print("reference vs the archive's thread index (MHonArc also joins by subject):")
    print("  " + threadcheck.score(index, reference).line("index pairs found"))
    run("fedora-devel 2010-01", raws, reference, shuffles)
    for seed in (7, 8, 9):
        broken, broken_reference = threadcheck.broken_variant(raws, seed)
        run(f"broken variant (seed {seed})", broken, broken_reference, shuffles)


if __name__ == "__main__":
    main()
