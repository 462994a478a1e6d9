"""Logo thumbnails with Pillow, from untrusted bytes: the declared type must be PNG, JPEG or
WebP and the file must be that; the size is checked from the header before any pixel is
decoded (a 20,000 x 20,000 PNG can be a few kilobytes: a decompression bomb); the output is
drawn afresh, so no metadata (EXIF, text chunks, ICC profiles) of the upload survives."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

SIZES = (64, 256)
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


class Rejected(Exception):
    """An upload that never becomes a logo; `reason` is the LogoRejected condition's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def thumbnails(data: bytes, content_type: str, max_pixels: int) -> dict[int, bytes]:
    """PNG thumbnails, each a transparent square of its size with the logo fitted inside."""
    fmt = FORMATS.get(content_type.split(";")[0].strip().lower())
    if fmt is None:
        raise Rejected("WrongContentType", f"{content_type or 'no content type'} is not accepted")
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own bomb check, at open, on the header
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise Rejected(
                "TooManyPixels", f"more than {max_pixels:,} pixels: refused before decoding"
            ) from err
        except Exception as err:  # Pillow raises many kinds for hostile bytes
            raise Rejected("Undecodable", f"not a readable {fmt} image") from err
        width, height = img.size
        if width * height > max_pixels:
            raise Rejected(
                "TooManyPixels", f"{width} x {height} pixels; at most {max_pixels:,} are decoded"
            )
        try:
            if fmt == "JPEG":  # decode at a reduced scale straight away: far less work
                img.draft("RGB", (max(SIZES), max(SIZES)))
            img.load()
            rgba = ImageOps.exif_transpose(img).convert("RGBA")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise Rejected("TooManyPixels", f"more than {max_pixels:,} pixels") from err
        except Exception as err:
            raise Rejected("Undecodable", f"not a readable {fmt} image") from err
    out = {}
    source = rgba
    for size in sorted(SIZES, reverse=True):
        # Each size from the one before: the 64 px from the 256 px, not from the original.
        fitted = source.copy()
        fitted.thumbnail((size, size), Image.Resampling.LANCZOS)
        source = fitted
        canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
        buffer = io.BytesIO()
        canvas.save(buffer, "PNG")
        out[size] = buffer.getvalue()
    return out
