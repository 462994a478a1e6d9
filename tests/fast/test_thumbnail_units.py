"""Thumbnails from hostile bytes (Pillow, no cluster): what becomes a logo and what is refused."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from herd_api.worker import images, thumbnailer

from .. import logo_files

CAP = 25_000_000


def test_a_logo_becomes_two_square_pngs_without_its_metadata() -> None:
    out = images.thumbnails(logo_files.png(text="secret location 51.5N"), "image/png", CAP)
    assert sorted(out) == [64, 256]
    for size, data in out.items():
        thumb = Image.open(io.BytesIO(data))
        assert thumb.format == "PNG" and thumb.size == (size, size)
        assert "Comment" not in thumb.info and b"secret" not in data
    jpeg = images.thumbnails(logo_files.jpeg(), "image/jpeg", CAP)
    assert Image.open(io.BytesIO(jpeg[256])).size == (256, 256)


@pytest.mark.parametrize(
    ("data", "ctype", "reason"),
    [
        (logo_files.png_header_then_garbage(), "image/png", "Undecodable"),
        (logo_files.huge_png(), "image/png", "TooManyPixels"),
        (logo_files.SVG, "image/png", "Undecodable"),
        (logo_files.SVG, "image/svg+xml", "WrongContentType"),
        (logo_files.jpeg(), "image/png", "Undecodable"),  # not what it says it is
        (logo_files.png(), "text/html", "WrongContentType"),
        (b"", "image/webp", "Undecodable"),
    ],
    ids=["garbage", "bomb", "svg-as-png", "svg", "jpeg-as-png", "html", "empty"],
)
def test_hostile_uploads_are_refused_with_a_reason(data: bytes, ctype: str, reason: str) -> None:
    with pytest.raises(images.Rejected) as refused:
        images.thumbnails(data, ctype, CAP)
    assert refused.value.reason == reason


def test_the_pixel_cap_is_checked_before_decoding() -> None:
    with pytest.raises(images.Rejected) as refused:
        images.thumbnails(logo_files.png(2000, 2000), "image/png", 1_000_000)
    assert refused.value.reason == "TooManyPixels"
    assert "1,000,000 pixels" in refused.value.message


def test_only_raw_slug_uuid_keys_are_uploads() -> None:
    assert thumbnailer.RAW_KEY.match("raw/acme/0b6d1c2e-8f1a-4c3b-9d2e-1f2a3b4c5d6e")
    for bad in (
        "raw/acme/../other/0b6d1c2e-8f1a-4c3b-9d2e-1f2a3b4c5d6e",
        "raw/Acme/0b6d1c2e-8f1a-4c3b-9d2e-1f2a3b4c5d6e",
        "logos/acme/0b6d1c2e-8f1a-4c3b-9d2e-1f2a3b4c5d6e",
        "raw/acme/not-a-uuid",
    ):
        assert not thumbnailer.RAW_KEY.match(bad), bad
    assert thumbnailer.uploads({"Event": "s3:TestEvent"}) == []
    with pytest.raises(ValueError):
        thumbnailer.uploads({"hello": "world"})
