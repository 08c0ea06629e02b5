"""A minimal TNEF (winmail.dat) writer for tests, from MS-OXTNEF section 2.1.3.

tnefparse only reads, so the fixtures are written here: the signature
0x223E9F78, a key, then attributes laid out as level (1 byte), id (4 bytes:
the attribute's type in the high word), length (4), data, and a checksum
(2: the sum of the data's bytes modulo 65536).  All integers little-endian.
"""

from __future__ import annotations

import struct

SIGNATURE = 0x223E9F78
LVL_MESSAGE, LVL_ATTACHMENT = 0x01, 0x02

# Attribute ids with their types (MS-OXTNEF 2.1.3.3).
ATT_TNEF_VERSION = 0x00089006
ATT_OEM_CODEPAGE = 0x00069007
ATT_MESSAGE_CLASS = 0x00078008
ATT_MSG_PROPS = 0x00069003
ATT_ATTACH_REND_DATA = 0x00069002
ATT_ATTACH_TITLE = 0x00018010
ATT_ATTACH_DATA = 0x0006800F
ATT_ATTACHMENT = 0x00069005

# MAPI property types and tags (MS-OXCDATA, MS-OXPROPS).
PT_UNICODE, PT_BINARY, PT_STRING8 = 0x001F, 0x0102, 0x001E
PR_BODY, PR_RTF_COMPRESSED, PR_BODY_HTML = 0x1000, 0x1009, 0x1013
PR_ATTACH_LONG_FILENAME, PR_ATTACH_MIME_TAG, PR_ATTACH_CONTENT_ID = 0x3707, 0x370E, 0x3712


def attribute(level: int, att_id: int, data: bytes) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BII", level, att_id, len(data)) + data + struct.pack("<H", checksum)


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def mapi_props(props: list[tuple[int, int, bytes | str]]) -> bytes:
    """A counted list of (type, tag, value) properties; strings and binaries are one-value lists."""
    out = struct.pack("<I", len(props))
    for ptype, tag, value in props:
        if ptype == PT_UNICODE:
            value = (value + "\x00").encode("utf-16-le")
        elif ptype == PT_STRING8 and isinstance(value, str):
            value = value.encode("ascii") + b"\x00"
        out += struct.pack("<HH", ptype, tag) + struct.pack("<II", 1, len(value)) + _padded(value)
    return out


def rend_data() -> bytes:
    # RENDDATA: atyp (1 = file), ulPosition, dxWidth, dyHeight, dwFlags.
    return struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0xFFFF, 0xFFFF, 0)


def winmail_dat(files: list[dict], *, codepage: int = 1252, body_props: list | None = None) -> bytes:
    """A TNEF stream as Outlook writes it: version, code page, class, body properties, then
    each file as attAttachRendData, attAttachTitle (8-bit, in `codepage`), attAttachData and,
    when given, attAttachment with a long (Unicode) name, a MIME type and a Content-ID.

    Each file is a dict: title (bytes), data (bytes), and optionally long_name, mime, cid.
    """
    out = struct.pack("<IH", SIGNATURE, 0x1A2B)
    out += attribute(LVL_MESSAGE, ATT_TNEF_VERSION, struct.pack("<I", 0x00010000))
    out += attribute(LVL_MESSAGE, ATT_OEM_CODEPAGE, struct.pack("<II", codepage, 0))
    out += attribute(LVL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Note\x00")
    if body_props:
        out += attribute(LVL_MESSAGE, ATT_MSG_PROPS, mapi_props(body_props))
    for f in files:
        out += attribute(LVL_ATTACHMENT, ATT_ATTACH_REND_DATA, rend_data())
        out += attribute(LVL_ATTACHMENT, ATT_ATTACH_TITLE, f["title"] + b"\x00")
        out += attribute(LVL_ATTACHMENT, ATT_ATTACH_DATA, f["data"])
        props = []
        if "long_name" in f:
            props.append((PT_UNICODE, PR_ATTACH_LONG_FILENAME, f["long_name"]))
        if "mime" in f:
            props.append((PT_STRING8, PR_ATTACH_MIME_TAG, f["mime"]))
        if "cid" in f:
            props.append((PT_STRING8, PR_ATTACH_CONTENT_ID, f["cid"]))
        if props:
            out += attribute(LVL_ATTACHMENT, ATT_ATTACHMENT, mapi_props(props))
    return out
