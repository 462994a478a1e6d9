"""Logo files for the tests, good and hostile, made in memory."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, PngImagePlugin


def png(width: int = 300, height: int = 120, text: str = "") -> bytes:
    """A real PNG; `text` goes into a tEXt chunk (metadata the thumbnails must not keep)."""
    img = Image.new("RGB", (width, height), (20, 120, 80))
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("Comment", text)
    out = io.BytesIO()
    img.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def jpeg(width: int = 640, height: int = 480) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "JPEG", quality=85)
    return out.getvalue()


def png_header_then_garbage() -> bytes:
    return png()[:33] + b"\x00garbage\xff" * 400


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(side: int = 20_000) -> bytes:
    """A valid side x side 1-bit PNG of a few tens of kilobytes: 400 million pixels once
    decoded (a decompression bomb)."""
    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.cookie)</script></svg>"
)


def oversize(limit: int = 2 * 1024 * 1024) -> bytes:
    """A real PNG padded past the limit (trailing bytes after IEND)."""
    head = png()
    return head + b"\x00" * (limit + 1 - len(head))
