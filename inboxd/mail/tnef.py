"""winmail.dat (TNEF, application/ms-tnef): the files and the body text Outlook packed into it.

Outlook and Exchange send "rich text" mail as a MIME part that wraps the
real attachments and often the body in Microsoft's Transport Neutral
Encapsulation Format (MS-OXTNEF).  A customer's PDF inside winmail.dat is
still the customer's PDF: `read_tnef` unpacks it so the ticket lists the
real files, and hands over the body (plain, HTML or RTF) for mail that has
no other text.

This module is the only user of ``tnefparse`` (the TNEF reader),
``compressed_rtf`` (PR_RTF_COMPRESSED) and ``striprtf`` (RTF to text).  It
is pure and never raises: a stream it cannot read gives None, and the
caller keeps winmail.dat as the attachment it came as.
"""

from __future__ import annotations

import logging
import mimetypes
import struct
from dataclasses import dataclass

__all__ = ["TNEF_TYPES", "TnefContent", "TnefFile", "is_tnef", "read_tnef"]

TNEF_TYPES = frozenset(("application/ms-tnef", "application/vnd.ms-tnef"))
# What Outlook names the part; some gateways relabel it application/octet-stream.
TNEF_NAMES = frozenset(("winmail.dat", "win.dat"))
TNEF_SIGNATURE = b"\x78\x9f\x3e\x22"  # 0x223E9F78, little-endian.

# MAPI property tags the reader leaves among an attachment's properties.
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E
_PR_ATTACH_CONTENT_ID = 0x3712
# Decompressing RTF is pure Python (about 1 s a MiB); a body larger than this is left out.
_RTF_LIMIT = 4 << 20

# tnefparse logs every odd property at WARNING; the caller records one defect instead.
logging.getLogger("tnefparse").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class TnefFile:
    filename: str | None
    content_type: str
    data: bytes
    content_id: str | None


@dataclass(frozen=True)
class TnefContent:
    files: tuple[TnefFile, ...]
    # The body, as one of these: plain text, HTML, or text taken out of RTF.
    text: str | None
    html: str | None


def is_tnef(content_type: str, filename: str | None) -> bool:
    """Whether a MIME part is a TNEF stream by its label (the bytes are checked by `read_tnef`)."""
    return content_type in TNEF_TYPES or (filename or "").strip().lower() in TNEF_NAMES


def read_tnef(data: bytes, decode) -> TnefContent | None:
    """The files and body inside a TNEF stream, or None if it is none or cannot be read.

    `decode(bytes, charset)` decodes 8-bit text (names and bodies written
    in the sender's ANSI code page), so the caller's charset rules apply.
    """
    if not data.startswith(TNEF_SIGNATURE):
        return None
    try:
        from tnefparse.tnef import TNEF

        tnef = TNEF(data, do_checksum=False)
        codepage = tnef.codepage
        files = tuple(f for f in (_file(a, codepage, decode) for a in tnef.attachments) if f is not None)
        text, html = _body(tnef, codepage, decode)
    except Exception:  # noqa: BLE001 - a broken stream keeps winmail.dat as it came
        return None
    return TnefContent(files, text, html)


def _file(attachment, codepage: str | None, decode) -> TnefFile | None:
    data = attachment.data or b""
    props = {p.name: p for p in attachment.mapi_attrs}
    name = _text(props.get(_PR_ATTACH_LONG_FILENAME), codepage, decode)
    if not name:
        # attAttachTitle, the 8.3 name, in the code page; tnefparse's own
        # `name` would decode it as UTF-8 and fail on Chinese names.
        title = attachment._name  # noqa: SLF001 - the raw bytes are not exposed otherwise
        name = decode(title, codepage) if isinstance(title, bytes) else str(title or "")
    name = name.replace("\x00", "").strip() or None
    if not data and name is None:
        return None
    content_type = (_text(props.get(_PR_ATTACH_MIME_TAG), codepage, decode) or "").strip().lower()
    if "/" not in content_type:
        content_type = (mimetypes.guess_type(name)[0] if name else None) or "application/octet-stream"
    content_id = (_text(props.get(_PR_ATTACH_CONTENT_ID), codepage, decode) or "").strip().strip("<>") or None
    return TnefFile(name, content_type, bytes(data), content_id)


def _text(prop, codepage: str | None, decode) -> str | None:
    """A string property's value, whether tnefparse decoded it or left bytes."""
    if prop is None:
        return None
    value = prop.data
    if isinstance(value, bytes):
        value = decode(value, codepage)
    return str(value).replace("\x00", "")


def _body(tnef, codepage: str | None, decode) -> tuple[str | None, str | None]:
    """(plain text, HTML) of the body; RTF, when it is all there is, as plain text."""
    if tnef.body:
        text = tnef.body if isinstance(tnef.body, str) else decode(tnef.body, codepage)
        if text.strip("\x00 \r\n"):
            return text.replace("\x00", ""), None
    if tnef.htmlbody:
        html = tnef.htmlbody if isinstance(tnef.htmlbody, str) else decode(tnef.htmlbody, None)
        if html.strip("\x00 \r\n"):
            return None, html.replace("\x00", "")
    rtf = _rtf(tnef._rtfbody)  # noqa: SLF001 - see _rtf
    if rtf:
        return _rtf_text(rtf), None
    return None, None


def _rtf(compressed: bytes | None) -> bytes | None:
    """PR_RTF_COMPRESSED decompressed (MS-OXRTFCP), or None."""
    if not compressed or len(compressed) < 16 or len(compressed) > _RTF_LIMIT:
        return None
    from compressed_rtf import decompress

    # tnefparse strips trailing NUL bytes from binary properties, and the
    # stream's CRC covers them: put back as many as the header's size says.
    (size,) = struct.unpack_from("<I", compressed)
    if size + 4 > len(compressed):
        compressed = compressed + b"\x00" * (size + 4 - len(compressed))
    try:
        return decompress(compressed)
    except Exception:  # noqa: BLE001 - a bad checksum or stream: no body from it
        return None


def _rtf_text(rtf: bytes) -> str | None:
    from striprtf.striprtf import rtf_to_text

    # RTF is 7-bit text; its \'XX escapes are decoded by the code page it
    # names, and bytes that page cannot decode stay visible as \xNN, as
    # inboxd.mail.message.clean_text shows undecodable bytes.
    text = rtf_to_text(rtf.decode("latin-1"), errors="backslashreplace")
    text = text.replace("\x00", "").strip("\r\n")
    return text or None
