"""Time quote stripping (`reply_text`) on a typical 2 KB reply with quoted history.

    .venv/bin/python bench/quotes.py [ROUNDS]

Prints milliseconds per call, best of five rounds of ROUNDS calls (default
500).  The aim is 0.2 ms; tests/test_quotes.py checks only what is cut.
"""

from __future__ import annotations

import sys
import timeit

from inboxd.quotes import reply_text

BODY = (("Hello team, the printer on floor 3 is jammed again. " * 6 + "\n") * 4
        + "\nOn Tue, Jan 2, 2024 at 10:00 AM Support <support@example.com> wrote:\n"
        + "> We have sent a technician; please let us know if it happens again.\n" * 12)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    best = min(timeit.repeat(lambda: reply_text(BODY), number=rounds, repeat=5)) / rounds
    print(f"reply_text on a {len(BODY.encode())} B body: {best * 1000:.3f} ms per call (best of 5 x {rounds})")


if __name__ == "__main__":
    main()
