"""Large mail in little memory: parse it without copying its big parts, spool it to disk.

The stdlib parser holds many copies of what it parses (the bytes as text,
every line as a string, each part's payload joined, then decoded), so a
41 MiB mail cost the daemon over 400 MiB.  Above LARGE_MESSAGE_BYTES a mail
is parsed by `parse_large` instead:

1. a scan of the raw bytes finds the MIME tree's leaf parts, by the rules
   of the stdlib's feed parser (boundary lines, the line ending before a
   boundary belongs to the boundary);
2. each leaf over DETACH_PART_BYTES that is an attachment is decoded from
   the raw bytes a chunk at a time, hashed, and written to its file under
   data_dir; in a skeleton copy of the mail its body becomes a short random
   token.  A forwarded or returned mail (message/*) is such an attachment
   too, kept as the bytes it came as (the stdlib writes it out anew);
3. the body text over BODY_TEXT_BYTES is cut to that size in the skeleton;
4. `parse_message` reads the skeleton, and each token's attachment is
   replaced by the real one's size and hash.

The result is the one `parse_message` gives for the whole mail, but for the
cut text (which says so) and a message/* attachment's bytes; tests compare
the two over the shared corpus with every part detached.  Whatever the scan
is not sure about (an unusual transfer encoding, broken base64, a boundary
it cannot place) stays in the skeleton as it was: odd mail costs memory,
never correctness.  A winmail.dat (TNEF) part is never detached either:
`parse_message` unpacks the files inside it, which needs its bytes, so it
costs the memory of its size.  A "cid:" reference that an HTML body makes
past the cut is not seen, so that image counts as an attachment, not inline.

Mail over `[store] max_message_bytes` is not parsed at all: the IMAP edge
streams it into a `Spool` file under data_dir/oversize, and it is
quarantined with its bytes there, not in the store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, replace
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from pathlib import Path

from inboxd.mail.attachments import attachment_path
from inboxd.mail.message import InboundMessage, _filename, _payload_bytes, parse_message
from inboxd.mail.tnef import is_tnef

MiB = 1 << 20
# Mail larger than this is parsed by parse_large (and never sent to the parser worker).
LARGE_MESSAGE_BYTES = 1 * MiB
# Attachments whose encoded body is larger than this are decoded straight to disk.
DETACH_PART_BYTES = 64 * 1024
# Base64 attachments whose encoded body is larger than this are cut out of
# the mail before the stdlib parses it (`cut_attachments`); smaller ones cost
# the feed parser less than the scan.
CUT_PART_BYTES = 16 * 1024
# The body text is cut to this many bytes of its encoded form.
BODY_TEXT_BYTES = 1 * MiB
CUT_NOTE = "\n\n[inboxd: the text was cut at 1 MiB; the whole mail is kept]"
# How much is decoded (or fetched, or written) at a time.
CHUNK = 1 * MiB

_MAX_DEPTH = 40
# A header block is read only this far; a longer one is left to the stdlib.
_HEADER_LIMIT = 256 * 1024
# The feed parser's own tests: a header line, and a line ending.
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
_FIRST_HEADER = re.compile(rb"(?:From |[!-9;-~]+[ \t]*:)")
_LINE_END = re.compile(rb"\r\n|\r|\n")
# What may follow "--boundary" on a boundary line: "--" (the last one), blanks, the line end.
_DELIMITER_TAIL = re.compile(rb"(--)?[ \t]*(\r\n|\r|\n)?")
_UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")
_IDENTITY = ("", "7bit", "8bit", "binary")
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")


def header_block(raw: bytes) -> bytes:
    """The mail's header block (up to the first empty line): all a header parser needs.

    Parsing a whole 40 MB mail for its headers costs the stdlib eight times
    its size; the header block costs almost nothing.
    """
    pos = 0
    for end in _LINE_END.finditer(raw, 0, _HEADER_LIMIT):
        if end.start() == pos:
            return raw[:pos]
        pos = end.end()
    return raw[:_HEADER_LIMIT]


def read_head(path: Path) -> bytes:
    """The start of a mail kept on disk: enough for `header_block` and `extract_message_id`."""
    with open(path, "rb") as fh:
        return fh.read(_HEADER_LIMIT)


@dataclass(frozen=True)
class _Detached:
    size: int
    sha256: str


@dataclass
class _Scan:
    """What the scan of one mail produced."""

    raw: bytes
    # None: the scan of `cut_attachments`, which keeps what it cuts out in memory.
    data_dir: Path | None
    max_attachment_bytes: int
    nonce: str
    # The skeleton: (start, end) ranges of raw and replacement bytes, in order.
    pieces: list
    # The token's hash -> the real attachment (a _Detached, or the content itself in memory).
    detached: dict
    # The body text candidates, in order: (content type, whether it was cut).
    texts: list

    def keep(self, start: int, end: int) -> None:
        if end > start:
            self.pieces.append((start, end))

    def skeleton(self) -> bytes:
        return b"".join(self.raw[p[0]:p[1]] if isinstance(p, tuple) else p for p in self.pieces)


def parse_large(raw: bytes, max_attachment_bytes: int, data_dir: Path) -> InboundMessage:
    """`parse_message(raw)` for a large mail, with its large attachments saved under
    `data_dir` (their content None) and its body text cut to BODY_TEXT_BYTES."""
    if not _FIRST_HEADER.match(raw):
        # Leading blank lines or no header block: the stdlib decides what that is.
        return parse_message(raw, max_attachment_bytes=max_attachment_bytes)
    scan = _Scan(raw, data_dir, max_attachment_bytes, secrets.token_hex(16), [], {}, [])
    _entity(scan, 0, len(raw), top=True, depth=0)
    msg = parse_message(scan.skeleton(), max_attachment_bytes=max_attachment_bytes)
    attachments = tuple(
        replace(a, size=found.size, sha256=found.sha256, content=None) if (found := scan.detached.get(a.sha256))
        else a for a in msg.attachments)
    msg = replace(msg, attachments=attachments, size=len(raw))
    # The body is the first plain text part, else the first HTML one (as message._walk chooses).
    chosen = next((cut for ctype, cut in scan.texts if ctype == "text/plain"),
                  next((cut for ctype, cut in scan.texts if ctype == "text/html"), False))
    if chosen:
        msg = replace(msg, text=msg.text + CUT_NOTE, defects=(*msg.defects, "BodyTextCut"))
    return msg


def cut_attachments(raw: bytes) -> tuple[bytes, dict[str, bytes]]:
    """`raw` with each base64 attachment over CUT_PART_BYTES replaced by a
    short token, and the content of each, by the SHA-256 of what its token
    part decodes to; (raw, {}) when there is none.

    `parse_message` parses the result instead of `raw`: the feed parser
    reads a base64 attachment line by line, a cost of three quarters of
    the parse of a mail with a 200 KB file, while the scan finds its ends
    with a byte search.  It is the scan of `parse_large`, in memory and
    cutting out only what gives the stdlib's bytes exactly: a strictly
    valid base64 leaf (what `get_payload(decode=True)` decodes with no
    defect) that is no body text, no forwarded mail and no winmail.dat.
    Whatever else is left as it came.
    """
    if not _FIRST_HEADER.match(raw):
        return raw, {}
    scan = _Scan(raw, None, 0, secrets.token_hex(16), [], {}, [])
    _entity(scan, 0, len(raw), top=True, depth=0)
    if not scan.detached:
        return raw, {}
    return scan.skeleton(), scan.detached


def _entity(scan: _Scan, start: int, end: int, *, top: bool, depth: int) -> None:
    """Add raw[start:end], one message or body part, to the skeleton, detaching what it can."""
    split = _split_head(scan.raw, start, end)
    if split is None or depth > _MAX_DEPTH:
        scan.keep(start, end)
        return
    body_start = split
    head = BytesHeaderParser(policy=compat32).parsebytes(scan.raw[start:body_start])
    scan.keep(start, body_start)
    if head.get_content_maintype() == "multipart":
        _multipart(scan, head, body_start, end, depth)
        return
    # A part's payload loses the line ending before the next boundary line
    # (RFC 2046: it belongs to the boundary); the whole mail's keeps it.
    body_end = end
    if not top:
        eol = _eol_before(scan.raw, body_start, end)
        body_end -= eol
    _leaf(scan, head, body_start, body_end)
    scan.keep(body_end, end)


def _split_head(raw: bytes, start: int, end: int) -> int | None:
    """Where the body of the entity at raw[start:end] starts, or None if its
    header block is not a clean run of header lines ended by an empty line."""
    pos = start
    limit = min(end, start + _HEADER_LIMIT)
    while pos < limit:
        m = _LINE_END.search(raw, pos, end)
        if m is None:
            return None
        if m.start() == pos:
            return m.end()
        if not _HEADER_LINE.match(raw, pos, m.start()):
            return None
        # A "From " line below the first is no header to the feed parser:
        # the last one is the body's first line, another one is dropped.
        if pos != start and raw.startswith(b"From ", pos):
            return None
        pos = m.end()
    return None


def _eol_before(raw: bytes, start: int, end: int) -> int:
    if end - start >= 2 and raw[end - 2:end] == b"\r\n":
        return 2
    if end > start and raw[end - 1] in b"\r\n":
        return 1
    return 0


def _multipart(scan: _Scan, head: Message, start: int, end: int, depth: int) -> None:
    boundary = head.get_boundary()
    # In a digest, parts without a Content-Type are messages: left to the stdlib.
    digest = head.get_content_type() == "multipart/digest"
    lines = _delimiters(scan.raw, boundary, start, end) if boundary and not digest else None
    if not lines:
        scan.keep(start, end)
        return
    # The preamble and each delimiter line stay; each part between two
    # delimiter lines (or the last one and the end) is scanned in turn.
    scan.keep(start, lines[0][0])
    for i, (line_start, line_end, close) in enumerate(lines):
        scan.keep(line_start, line_end)
        if close:
            scan.keep(line_end, end)
            return
        part_end = lines[i + 1][0] if i + 1 < len(lines) else end
        _entity(scan, line_end, part_end, top=False, depth=depth + 1)


def _delimiters(raw: bytes, boundary: str, start: int, end: int) -> list[tuple[int, int, bool]] | None:
    """The boundary lines of a multipart body up to its closing one: (start, end, closing).

    None when the feed parser would read them in a way this scan does not
    follow (two delimiter lines in a row, or none at all).
    """
    try:
        sep = b"--" + boundary.encode("ascii")
    except UnicodeEncodeError:
        return None
    found: list[tuple[int, int, bool]] = []
    pos = start
    while True:
        i = raw.find(sep, pos, end)
        if i < 0:
            break
        pos = i + len(sep)
        if i != start and raw[i - 1] not in b"\r\n":
            continue
        tail = _DELIMITER_TAIL.match(raw, pos, end)
        if tail.end() != end and not tail.group(2):
            continue
        if found and found[-1][1] == i:
            return None
        found.append((i, tail.end(), bool(tail.group(1))))
        if tail.group(1):
            break
        pos = tail.end()
    return found or None


def _leaf(scan: _Scan, head: Message, start: int, end: int) -> None:
    """One leaf's payload raw[start:end]: detached, cut or kept."""
    ctype = head.get_content_type()
    cte = str(head.get("content-transfer-encoding", "")).lower()
    if scan.data_dir is None:
        _cut_in_memory(scan, head, ctype, cte, start, end)
        return
    if head.get_content_maintype() == "message":
        # A forwarded mail, or the returned one in a bounce: an attachment
        # (message._walk), kept as the bytes it arrived as, where the stdlib
        # would give the parsed mail written out again.
        if ctype in _DSN_TYPES or cte not in _IDENTITY or end - start <= DETACH_PART_BYTES:
            scan.keep(start, end)
        else:
            _detach(scan, start, end, "", message=True)
        return
    if ctype in ("text/plain", "text/html") and _filename(head) is None \
            and head.get_content_disposition() != "attachment":
        # A body text (message._walk takes the first plain one, else the first HTML one).
        cut = _cut_text(scan.raw, start, end, cte) if end - start > BODY_TEXT_BYTES else None
        scan.texts.append((ctype, cut is not None))
        if cut is None:
            scan.keep(start, end)
        else:
            scan.pieces.append(cut)
        return
    if end - start <= DETACH_PART_BYTES or cte in _UUENCODE or is_tnef(ctype, _filename(head)):
        scan.keep(start, end)
        return
    _detach(scan, start, end, cte)


def _cut_in_memory(scan: _Scan, head: Message, ctype: str, cte: str, start: int, end: int) -> None:
    """For `cut_attachments`: a strictly valid base64 attachment becomes a token, all else stays."""
    if cte != "base64" or end - start <= CUT_PART_BYTES or head.get_content_maintype() in ("message", "multipart"):
        scan.keep(start, end)
        return
    filename = _filename(head)
    # A body text stays, and so does a winmail.dat; a file name that is not
    # ASCII stays too, as the walk reads such a name in the mail's charset.
    if (filename is not None and not filename.isascii()) or is_tnef(ctype, filename) or (
            ctype in ("text/plain", "text/html") and filename is None and head.get_content_disposition() != "attachment"):
        scan.keep(start, end)
        return
    # As the stdlib's first try: the line ends dropped, strictly valid base64
    # with its padding (a part it decodes with a defect is left to it).
    data = scan.raw[start:end].translate(None, b"\r\n")
    if len(data) % 4:
        scan.keep(start, end)
        return
    try:
        content = binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        scan.keep(start, end)
        return
    token = f"inboxd-cut-{scan.nonce}-{len(scan.detached)}".encode("ascii")
    scan.detached[hashlib.sha256(token).hexdigest()] = content
    scan.pieces.append(base64.b64encode(token))


def _detach(scan: _Scan, start: int, end: int, cte: str, *, message: bool = False) -> None:
    """Decode raw[start:end] to its file and put a token in its place; the
    token's attachment, as the stdlib will make it, is then the real one."""
    found = _decode_to_disk(scan, start, end, cte)
    if found is None:
        scan.keep(start, end)
        return
    token = f"inboxd-detached-{scan.nonce}-{len(scan.detached)}".encode("ascii")
    if message:
        # The stdlib parses a message/* body as a mail and writes it out again.
        part = BytesParser(policy=compat32).parsebytes(b"Content-Type: message/rfc822\r\n\r\n" + token)
        content = _payload_bytes(part)
    else:
        content = token
    scan.detached[hashlib.sha256(content).hexdigest()] = found
    scan.pieces.append(base64.b64encode(token) if cte == "base64" else token)


def _cut_text(raw: bytes, start: int, end: int, cte: str) -> bytes | None:
    """The first BODY_TEXT_BYTES of a text body, ended on a line, in its own encoding."""
    if cte == "base64":
        encoded = raw[start:start + BODY_TEXT_BYTES].translate(None, b"\r\n")
        try:
            text = binascii.a2b_base64(encoded[:len(encoded) // 4 * 4])
        except binascii.Error:
            return None
        # A line end never falls inside a character of an ASCII-compatible charset.
        newline = text.rfind(b"\n")
        return base64.encodebytes(text[:newline + 1] if newline > 0 else text)
    newline = raw.rfind(b"\n", start, start + BODY_TEXT_BYTES)
    return raw[start:newline + 1] if newline > start else raw[start:start + BODY_TEXT_BYTES]


class _AttachmentFile:
    """Content written to its file under data_dir as it is decoded, hashed on the way;
    dropped once it grows past max_attachment_bytes (only its size and hash are kept)."""

    def __init__(self, data_dir: Path, limit: int):
        self.data_dir, self.limit = data_dir, limit
        self.digest = hashlib.sha256()
        self.size = 0
        folder = data_dir / "attachments"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        self.fh = os.fdopen(fd, "wb")

    def write(self, data) -> None:
        self.digest.update(data)
        self.size += len(data)
        if self.fh is not None:
            if self.size > self.limit:
                self.drop()
            else:
                self.fh.write(data)

    def drop(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
            os.unlink(self.tmp)

    def finish(self) -> _Detached:
        sha256 = self.digest.hexdigest()
        if self.fh is not None:
            self.fh.close()
            self.fh = None
            path = attachment_path(self.data_dir, sha256)
            if path.exists():
                os.unlink(self.tmp)
            else:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.replace(self.tmp, path)
        return _Detached(self.size, sha256)


def _decode_to_disk(scan: _Scan, start: int, end: int, cte: str) -> _Detached | None:
    """Decode raw[start:end] as get_payload(decode=True) would, into its file; None
    if it is not exactly what the stdlib would make of it (then it stays in the skeleton)."""
    out = _AttachmentFile(scan.data_dir, scan.max_attachment_bytes)
    try:
        if cte == "base64":
            ok = _base64(scan.raw, start, end, out)
        elif cte == "quoted-printable":
            ok = _quoted_printable(scan.raw, start, end, out)
        else:
            # 7bit, 8bit, binary and unknown encodings: the bytes as they are.
            view = memoryview(scan.raw)
            for pos in range(start, end, CHUNK):
                out.write(view[pos:min(pos + CHUNK, end)])
            ok = True
    except BaseException:
        out.drop()
        raise
    if not ok:
        out.drop()
        return None
    return out.finish()


def _base64(raw: bytes, start: int, end: int, out: _AttachmentFile) -> bool:
    # Strict base64 only, as the stdlib's first try (line ends aside): then
    # decoding piece by piece gives exactly its bytes.
    carry = b""
    for pos in range(start, end, CHUNK):
        data = carry + raw[pos:min(pos + CHUNK, end)].translate(None, b"\r\n")
        last = pos + CHUNK >= end
        usable = len(data) if last else len(data) // 4 * 4
        piece, carry = data[:usable], data[usable:]
        if (not last and b"=" in piece) or len(piece) % 4:
            return False
        try:
            out.write(binascii.a2b_base64(piece, strict_mode=True))
        except binascii.Error:
            return False
    return True


def _quoted_printable(raw: bytes, start: int, end: int, out: _AttachmentFile) -> bool:
    # Quoted-printable decodes line by line, so pieces that end on a line end decode alike.
    pos = start
    while pos < end:
        cut = raw.find(b"\n", min(pos + CHUNK, end), end)
        cut = end if cut < 0 else cut + 1
        out.write(binascii.a2b_qp(raw[pos:cut]))
        pos = cut
    return True


class Spool:
    """One mail written to disk as it arrives, hashed on the way; `finish` names it
    data_dir/oversize/<sha256>.eml (mode 0600).  Used for mail over max_message_bytes."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        self.fh = os.fdopen(fd, "wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.digest.update(data)
        self.size += len(data)

    def finish(self) -> Path:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        path = self.folder / f"{self.digest.hexdigest()}.eml"
        os.replace(self.tmp, path)
        return path

    def discard(self) -> None:
        self.fh.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
