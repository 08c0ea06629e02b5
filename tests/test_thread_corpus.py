"""Threading on a real mailing-list archive, in archive order and out of order.

The 292 messages of ../shared/corpus/rth+jwzthreading (fedora-devel, January
2010) go through the real pipeline onto a fresh store, spread over two
folders, in archive order, reversed and shuffled.  The reference is the
union of References/In-Reply-To computed from the raw headers
(inboxd.testing.threadcheck): every pair of messages it puts together must
share a ticket (recall 100%) and no other pair may (0 false joins).  The
archive's own thread index (EXPECTED.derived.json) differs from that
definition where MHonArc also joins by subject; the agreement with it is
printed, not asserted.  `python bench/threads.py` prints the same figures.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from inboxd.config import load_settings
from inboxd.testing import threadcheck

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus"
pytestmark = pytest.mark.skipif(not (CORPUS / threadcheck.MBOX).is_file(), reason="the shared corpus is absent")


@pytest.fixture(scope="module")
def archive():
    raws = threadcheck.archive_messages(CORPUS)
    return raws, threadcheck.reference_labels(raws), threadcheck.expected_labels(CORPUS, len(raws))


def _orders(n: int) -> dict[str, list[int]]:
    orders = {"archive": list(range(n)), "reversed": list(range(n))[::-1]}
    for seed in (1, 2):
        shuffled = list(range(n))
        random.Random(seed).shuffle(shuffled)
        orders[f"shuffled (seed {seed})"] = shuffled
    return orders


@pytest.mark.parametrize("name", list(_orders(292)))
def test_union_of_references_in_any_order(tmp_path, archive, name):
    raws, reference, expected = archive
    assert len(raws) == 292
    order = _orders(len(raws))[name]
    got = threadcheck.file_in_order(load_settings(threadcheck.offline_config(tmp_path)), raws, order)
    assert None not in got, "every message is filed"
    result = threadcheck.score(reference, got)
    print()
    print(result.line(name))
    print(threadcheck.score(expected, got).line("  vs the archive index"))
    assert result.joined == result.reference_pairs, "every pair the headers connect shares a ticket"
    assert result.false_joins == 0
    assert result.tickets == result.conversations


def test_reference_and_archive_index_differ_only_where_the_index_joins_by_subject(archive):
    """The reference joins no pair the archive's index keeps apart."""
    raws, reference, expected = archive
    assert len(set(reference)) == 62
    agreement = threadcheck.score(expected, reference)
    assert agreement.false_joins == 0
    # The index joins 29 pairs more (idx 3 "Re: ABRT considered painful" and
    # the "Common Lisp apps in Fedora" pair, see EXPECTED's _note).
    assert agreement.reference_pairs - agreement.joined == 29


@pytest.mark.parametrize("name", ["archive", "reversed", "shuffled (seed 1)"])
def test_broken_headers_and_lost_parents_in_any_order(tmp_path, archive, name):
    """The archive as broken clients and lost mail leave it (threadcheck.broken_variant):
    In-Reply-To only, cut References, bare and free-text ids, a tenth of the
    parents never arriving, and repeated Message-IDs with other content."""
    raws, _reference, _expected = archive
    broken, reference = threadcheck.broken_variant(raws, seed=7)
    order = _orders(len(broken))[name]
    got = threadcheck.file_in_order(load_settings(threadcheck.offline_config(tmp_path)), broken, order)
    result = threadcheck.score(reference, got)
    print()
    print(result.line(f"broken, {name}"))
    assert None not in got
    assert (result.joined, result.false_joins) == (result.reference_pairs, 0)
