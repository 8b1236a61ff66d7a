"""Image files forged byte by byte for tests of size limits (nothing here decodes them)."""

from __future__ import annotations

import struct
import zlib


def declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width``×``height`` RGB pixels but whose data is a few bytes.

    Args:
        width: Declared width.
        height: Declared height.

    Returns:
        The file's bytes: a decompression bomb's header, without the bomb.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))
