"""Floor-plan uploads are judged by their bytes (devices.floorplans.sniff): whole PNG or JPEG
images within the size and pixel caps, nothing else."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from devices.floorplans import MAX_BYTES, InvalidImage, fraction, sniff


def encoded(fmt: str, size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, fmt)
    return out.getvalue()


@given(st.sampled_from(["PNG", "JPEG"]), st.integers(1, 300), st.integers(1, 300))
def test_png_and_jpeg_give_their_type_and_size(fmt: str, width: int, height: int) -> None:
    info = sniff(encoded(fmt, (width, height)))
    assert (info.content_type, info.width, info.height) == (f"image/{fmt.lower()}", width, height)


@pytest.mark.parametrize("data", [
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    encoded("GIF", (10, 10), "P"),
    encoded("BMP", (10, 10)),
    encoded("PNG", (40, 40))[:60],  # truncated
    encoded("JPEG", (40, 40))[:200],
    b"",
])
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidImage, match="PNG 或 JPEG"):
        sniff(data)


def test_size_and_pixel_caps() -> None:
    with pytest.raises(InvalidImage, match="MiB"):
        sniff(encoded("PNG", (10, 10)) + bytes(MAX_BYTES))
    with pytest.raises(InvalidImage, match="pixels"):
        sniff(encoded("PNG", (8000, 6000), "1"))


@given(st.one_of(st.floats(allow_nan=True), st.integers(-3, 3), st.booleans(), st.text(max_size=3)))
def test_positions_are_fractions_of_the_image(value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    if ok:
        assert fraction(value, "x") == float(value)  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match="x must be a number from 0 to 1"):
            fraction(value, "x")
