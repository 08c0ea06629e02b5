"""Time quote stripping (`reply_text`) on a typical 2 KB reply with quoted history,
and print how many replies it trims exactly.

    .venv/bin/python bench/quotes.py [ROUNDS]

Prints milliseconds per call, best of five rounds of ROUNDS calls (default
500; the aim is 0.2 ms), then two exact-match figures: the visible corpus
fixtures in ../shared/corpus that tests/test_quotes.py scores (skipped when
the corpus is absent), and the multilingual client table of
tests/test_reply_text.py.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inboxd.mail.quotes import reply_text  # noqa: E402
from tests import test_quotes, test_reply_text  # noqa: E402

BODY = (("Hello team, the printer on floor 3 is jammed again. " * 6 + "\n") * 4
        + "\nOn Tue, Jan 2, 2024 at 10:00 AM Support <support@example.com> wrote:\n"
        + "> We have sent a technician; please let us know if it happens again.\n" * 12)


def corpus_figure() -> str:
    if not test_quotes.CORPUS.is_dir():
        return f"visible corpus: skipped, no {test_quotes.CORPUS}"
    parts, passed, scored = [], 0, 0
    for folder in test_quotes.FOLDERS:
        if (test_quotes.CORPUS / folder).is_dir():
            p, s, _ = test_quotes.score(folder)
            passed, scored = passed + p, scored + s
            parts.append(f"{folder} {p}/{s}")
    return f"visible corpus: {passed}/{scored} = {passed / scored:.3f} ({'; '.join(parts)})"


def table_figure() -> str:
    passed, total, failed = test_reply_text.table_score()
    missed = f"; missed: {', '.join(failed)}" if failed else ""
    return f"multilingual table: {passed}/{total} = {passed / total:.3f}{missed}"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    best = min(timeit.repeat(lambda: reply_text(BODY), number=rounds, repeat=5)) / rounds
    print(f"reply_text on a {len(BODY.encode())} B body: {best * 1000:.3f} ms per call (best of 5 x {rounds})")
    print(corpus_figure())
    print(table_figure())


if __name__ == "__main__":
    main()
