"""Measure threading against the union-of-references definition, on a real store.

The reference is computed here from the raw headers, independently of
inboxd's parser: two messages are in one conversation when a chain of
Message-IDs named in In-Reply-To or References (every <...> token) or held
as Message-ID connects them, whether or not the message with that id is in
the archive (the JWZ / notmuch definition).  A filing run feeds the same
mail through `Filer.file_batch` on a fresh SQLite store, in any order and
spread over folders, and reads back which ticket each message ended on.
Scores count pairs of messages: recall is the share of the reference's
pairs that share a ticket, false joins the pairs on one ticket that the
reference keeps apart.

Used by tests/test_thread_corpus.py and bench/threading.py.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

ARCHIVE = Path("rth+jwzthreading")
MBOX = ARCHIVE / "jwzthreading/tests/data/fedora-devel-mailman/2010-January.txt.gz"
EXPECTED = ARCHIVE / "EXPECTED.derived.json"

_SEPARATOR = re.compile(rb"^From \S+ .*$", re.MULTILINE)
_BRACKETED = re.compile(r"<([^<>]+)>")


def archive_messages(corpus: Path) -> list[bytes]:
    """The archive's messages in archive order (index = MHonArc message number)."""
    data = gzip.decompress((corpus / MBOX).read_bytes())
    starts = [m.start() for m in _SEPARATOR.finditer(data)]
    out = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        # Drop the "From " separator line itself; the rest is the mail.
        chunk = data[start:end]
        out.append(chunk[chunk.index(b"\n") + 1:])
    return out


def expected_labels(corpus: Path, count: int) -> list[int]:
    """The thread (as the archive's index shows it) of each message."""
    expected = json.loads((corpus / EXPECTED).read_text())
    labels = [-1] * count

    def walk(node: dict, root: int) -> None:
        labels[node["idx"]] = root
        for child in node["children"]:
            walk(child, root)

    for top in expected["expected_threads"]:
        walk(top, top["idx"])
    # A message the index leaves out is a thread of its own.
    return [label if label >= 0 else count + i for i, label in enumerate(labels)]


def reference_labels(raws: Sequence[bytes]) -> list[int]:
    """The conversation of each message by the union of its References/In-Reply-To."""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    for i, raw in enumerate(raws):
        head = parser.parsebytes(raw)
        node = f"#{i}"
        find(node)
        ids = _BRACKETED.findall(str(head.get("Message-ID", "")))[:1]
        for name in ("In-Reply-To", "References"):
            ids += _BRACKETED.findall(" ".join(str(h) for h in head.get_all(name, [])))
        for mid in ids:
            mid = re.sub(r"\s+", "", mid)
            if mid:
                union(node, "<" + mid + ">")
    roots: dict[str, int] = {}
    return [roots.setdefault(find(f"#{i}"), len(roots)) for i in range(len(raws))]


def broken_variant(raws: Sequence[bytes], seed: int = 7) -> tuple[list[bytes], list[int]]:
    """The archive as broken clients and lost mail make it, with its reference.

    Each message's threading headers are rewritten in one of the forms seen
    in the wild: In-Reply-To only; References cut to the first and the last
    two ids; a bare id without brackets; a free-text In-Reply-To ("Your
    message of <date> <id>", 'Message from Ann <ann@x> of "<date>" <id>');
    two ids in In-Reply-To; or left as it was.  One in ten messages never
    arrives (its id stays a ghost parent), and one in twenty replies arrives
    twice, the second time with a list footer: the same Message-ID with
    different content.  The reference is the union of the ids each kept
    message's rewritten headers mean, computed from those ids directly.
    """
    import random

    rng = random.Random(seed)
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    kept: list[bytes] = []
    links: list[list[str]] = []
    for raw in raws:
        head = parser.parsebytes(raw)
        own = _BRACKETED.findall(str(head.get("Message-ID", "")))[:1]
        irt = _BRACKETED.findall(str(head.get("In-Reply-To", "")))[:1]
        refs = _BRACKETED.findall(" ".join(str(h) for h in head.get_all("References", [])))
        if rng.random() < 0.1:
            continue                      # never reaches the mailbox
        parent = (irt or refs[-1:] or [None])[0]
        roll = rng.random()
        if parent is None:
            new_irt, new_refs, meant = None, None, []
        elif roll < 0.3:
            new_irt, new_refs, meant = f"<{parent}>", None, [parent]
        elif roll < 0.45:
            cut = list(dict.fromkeys(refs[:1] + refs[-2:])) or [parent]
            new_irt, new_refs, meant = f"<{parent}>", " ".join(f"<{r}>" for r in cut), [parent, *cut]
        elif roll < 0.55:
            new_irt, new_refs, meant = parent, None, [parent]
        elif roll < 0.65:
            new_irt = f"Your message of Tue, 5 Jan 2010 10:00:00 +0100 <{parent}>"
            new_refs, meant = " ".join(f"<{r}>" for r in refs) or None, [parent, *refs]
        elif roll < 0.7:
            new_irt = f'Message from Ann Example <ann@example.org> of "Tue, 5 Jan 2010" <{parent}>'
            new_refs, meant = " ".join(f"<{r}>" for r in refs) or None, [parent, *refs]
        elif roll < 0.75 and len(refs) >= 2:
            new_irt = f"<{refs[-1]}> <{refs[-2]}>"
            new_refs, meant = None, refs[-2:]
        else:
            new_irt = f"<{parent}>"
            new_refs, meant = " ".join(f"<{r}>" for r in refs) or None, [parent, *refs]
        mail = _with_headers(raw, {"In-Reply-To": new_irt, "References": new_refs})
        kept.append(mail)
        links.append(own + meant)
        if meant and rng.random() < 0.05:
            kept.append(mail.rstrip(b"\r\n") + b"\n\n--\nfedora-devel-list mailing list\n")
            links.append(meant)           # the repeat threads by its own headers, never by its id
    parent_of: dict[str, str] = {}

    def find(x: str) -> str:
        while parent_of.setdefault(x, x) != x:
            parent_of[x] = parent_of[parent_of[x]]
            x = parent_of[x]
        return x

    for i, ids in enumerate(links):
        find(f"#{i}")
        for mid in ids:
            parent_of[find(f"#{i}")] = find("<" + mid + ">")
    roots: dict[str, int] = {}
    return kept, [roots.setdefault(find(f"#{i}"), len(roots)) for i in range(len(kept))]


_HEADER_LINE = re.compile(rb"^(In-Reply-To|References):[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE)


def _with_headers(raw: bytes, values: dict[str, str | None]) -> bytes:
    """`raw` with In-Reply-To and References replaced (None: left out)."""
    end = raw.find(b"\n\n")
    head, body = raw[:end + 1], raw[end + 1:]
    head = _HEADER_LINE.sub(b"", head)
    extra = b"".join(f"{name}: {value}\n".encode() for name, value in values.items() if value)
    return head + extra + body


def pairs(labels: Sequence[int | None]) -> set[tuple[int, int]]:
    """Every pair (i, j), i < j, of messages with the same label (None joins nothing)."""
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        if label is not None:
            groups.setdefault(label, []).append(i)
    return {pair for members in groups.values() for pair in combinations(members, 2)}


@dataclass(frozen=True)
class Score:
    reference_pairs: int
    joined: int            # reference pairs on one ticket
    false_joins: int       # pairs on one ticket the reference keeps apart
    tickets: int
    conversations: int

    @property
    def recall(self) -> float:
        return self.joined / self.reference_pairs if self.reference_pairs else 1.0

    def line(self, name: str) -> str:
        return (f"{name:<22} recall {self.recall:7.2%} ({self.joined}/{self.reference_pairs} pairs)  "
                f"false joins {self.false_joins}  tickets {self.tickets}  conversations {self.conversations}")


def score(reference: Sequence[int], got: Sequence[int | None]) -> Score:
    want, have = pairs(reference), pairs(got)
    return Score(len(want), len(want & have), len(have - want),
                 len({t for t in got if t is not None}), len(set(reference)))


def file_in_order(settings, raws: Sequence[bytes], order: Sequence[int],
                  folders: Sequence[str] = ("INBOX", "Archive"), batch_size: int = 1) -> list[int | None]:
    """File `raws` in `order` on the store of `settings` (fresh), the i-th of
    the order in folders[i % len(folders)], `batch_size` per batch; returns
    the ticket (its surviving ticket's pk) of each message by its index in `raws`.
    """
    from inboxd.store.engine import open_store, writing
    from inboxd.desk.ingest import Batch, Fetched, Filer

    engine = open_store(settings.store.url)
    filer = Filer(settings)
    mailbox = settings.mailboxes[0].name
    now = datetime.now(UTC)
    # UIDs count up per folder in filing order, as a server gives them.
    uids = {folder: 0 for folder in folders}
    placed: dict[tuple[str, int], int] = {}
    queue: list[tuple[str, Fetched]] = []
    for n, index in enumerate(order):
        folder = folders[n % len(folders)]
        uids[folder] += 1
        placed[(folder, uids[folder])] = index
        # Arrival times follow the filing order, one second apart.
        queue.append((folder, Fetched(uids[folder], raws[index], arrived=now - timedelta(seconds=len(order) - n))))
    for start in range(0, len(queue), batch_size):
        chunk = queue[start:start + batch_size]
        by_folder: dict[str, list[Fetched]] = {}
        for folder, fetched in chunk:
            by_folder.setdefault(folder, []).append(fetched)
        for folder, fetched in by_folder.items():
            with writing(engine) as conn:
                filer.file_batch(conn, Batch(mailbox, folder, 1, fetched[-1].uid, fetched), now)
    engine.dispose()
    path = settings.store.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT s.folder, s.uid, m.ticket_id FROM sighting s"
                            " JOIN message m ON m.id = s.message_pk").fetchall()
    tickets: list[int | None] = [None] * len(raws)
    for folder, uid, ticket in rows:
        tickets[placed[(folder, uid)]] = ticket
    return tickets


def offline_config(tmp: Path, folders: Sequence[str] = ("INBOX", "Archive")) -> Path:
    """An inboxd.toml for filing without a server: everything is live mail."""
    secret = tmp / "imap-password"
    secret.write_text("unused\n")
    secret.chmod(0o600)
    config = tmp / "inboxd.toml"
    config.write_text("\n".join([
        "[store]", 'url = "sqlite:///inboxd.db"', 'data_dir = "var"', "",
        "[autoreply]", "enabled = false", "",
        "[[mailboxes]]", 'name = "support"', 'address = "support@example.com"',
        'history_before = "1970-01-01T00:00Z"',
        "[mailboxes.imap]", 'host = "127.0.0.1"', "port = 993", 'username = "support"',
        f'password_file = "{secret}"', f"folders = {json.dumps(list(folders))}", "",
    ]))
    return config
