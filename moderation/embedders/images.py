"""Safe decoding and normalising of untrusted images, shared by every backend.

A seller's upload is hostile until decoded: it may be another format in disguise, a
decompression bomb, a truncated file, or an odd mode (CMYK, 16-bit, palette with
transparency). ``open_image`` checks and fully decodes it, ``decode_image`` turns it
into an upright RGB image; both raise a ``PermanentEmbedError`` whose ``code`` says
what was wrong. ``moderation.uploads`` stores what ``open_image`` decoded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .base import PermanentEmbedError

logger = logging.getLogger("moderation.embedders")

TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def check_size(size: int, *, max_bytes: int | None) -> None:
    """Refuse ``size`` bytes over ``max_bytes`` (code ``image_too_large``), before anything reads them."""
    if max_bytes is not None and size > max_bytes:
        raise PermanentEmbedError(
            f"The image is {size} bytes; at most {max_bytes} are accepted.", code="image_too_large"
        )


def open_image(
    data: bytes,
    *,
    formats: Iterable[str],
    max_pixels: int,
    max_bytes: int | None,
    draft_size: int | None = None,
) -> Image.Image:
    """Check ``data`` and decode it fully: the first frame, in its own mode, ``format`` set,
    orientation not applied (``upright`` does that).

    The limits are the caller's (the app's come from ``IMAGE_FORMATS``,
    ``IMAGE_MAX_PIXELS`` and ``IMAGE_MAX_BYTES``: ``embedders.open_listing_image``):
    the Pillow format names accepted, the most pixels decoded, the most bytes read.

    ``draft_size`` lets JPEG decoding scale down by 2, 4 or 8 while the result stays
    at least that many pixels on its shorter side: a large photo that will be resized
    to 224 pixels decodes several times faster.

    Raises ``PermanentEmbedError`` with the code ``image_too_large``, ``image_empty``,
    ``image_format``, ``image_pixels``, ``image_truncated`` or ``image_corrupt``.
    """
    check_size(len(data), max_bytes=max_bytes)
    if not data:
        raise PermanentEmbedError("The image file is empty.", code="image_empty")
    formats = [fmt.upper() for fmt in formats]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=formats)
            width, height = image.size
            if width * height > max_pixels:
                raise PermanentEmbedError(
                    f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted.",
                    code="image_pixels",
                )
            if width == 0 or height == 0:
                raise PermanentEmbedError("The image has no pixels.", code="image_corrupt")
            if draft_size and image.format == "JPEG":
                # Orientation may swap the sides later, so ask for the shorter side on both.
                scale = min(width, height) / draft_size
                if scale >= 2:
                    image.draft("RGB", (int(width / scale) + 1, int(height / scale) + 1))
            image.load()  # the first frame of a GIF or an animated WebP
        except PermanentEmbedError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PermanentEmbedError("The image has too many pixels to decode safely.", code="image_pixels") from None
        except Exception as exc:
            # Decoders of hostile bytes raise what they raise (OSError, SyntaxError,
            # ValueError, EOFError, struct.error ...; a file cut in its headers is not even
            # identified): all of them mean this file cannot be decoded, never a fault
            # worth a retry. Their text is Pillow's ("Truncated File Read", "Decompressed
            # data too large for PngImagePlugin.MAX_TEXT_CHUNK"): for the log, not a seller.
            logger.debug("undecodable image (%d bytes): %r", len(data), exc)
            if cut_short(data, formats):
                raise PermanentEmbedError(
                    "The image is truncated: the file ends before the picture does.", code="image_truncated"
                ) from None
            if isinstance(exc, UnidentifiedImageError):
                raise PermanentEmbedError(
                    f"The file is not an image in an accepted format ({', '.join(formats)}).", code="image_format"
                ) from None
            raise PermanentEmbedError(
                "The image could not be decoded: the file is damaged or not a valid image.", code="image_corrupt"
            ) from None
    return image


def cut_short(data: bytes, formats: Iterable[str]) -> bool:
    """Whether ``data`` begins as one of ``formats`` (Pillow's names) and ends before that
    format's structure does: inside its signature, inside a part whose length it
    declares, or before its end marker. Read from the bytes, never from an error's text,
    so that a cut anywhere (headers, palette, pixels) is told from a damaged file."""
    for fmt, signature, whole in STRUCTURES:
        if fmt in formats and all(
            data[start : start + len(part)] == part[: max(0, len(data) - start)] for start, part in signature
        ):
            return not whole(data)
    return False


def _png_whole(data: bytes) -> bool:
    """Chunks (length, type, data, CRC) from byte 8 up to IEND's CRC, all there."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos <= len(data)
    return False


def _jpeg_whole(data: bytes) -> bool:
    """Segments (marker, length) up to the first scan, then its end (EOI, FFD9: the
    entropy-coded data never holds it). Bytes that are no marker are damage, not a cut."""
    pos = 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            return True
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before the marker
            pos += 1
            continue
        if marker == 0xD9:
            return True
        if pos + 4 > len(data):
            return False
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", pos + 2 + length) != -1
        pos += 2 + length
    return False


def _gif_whole(data: bytes) -> bool:
    """Header, palette, then blocks (extensions, images with their palettes and data
    sub-blocks) up to the trailer (3B)."""

    def palette(flags: int) -> int:
        return 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0

    if len(data) < 13:
        return False
    pos = 13 + palette(data[10])
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:
            return True
        if block == 0x21:  # extension: introducer, label, sub-blocks
            pos += 2
        elif block == 0x2C:  # image: descriptor, its palette, LZW code size, sub-blocks
            if pos + 10 > len(data):
                return False
            pos += 10 + palette(data[pos + 9]) + 1
        else:
            return True
        while pos < len(data) and data[pos]:
            pos += 1 + data[pos]
        pos += 1  # the empty sub-block that ends them
    return False


def _riff_whole(data: bytes) -> bool:
    """A RIFF file (WebP) declares its own length after its first four bytes."""
    return len(data) >= 8 and int.from_bytes(data[4:8], "little") + 8 <= len(data)


# (Pillow's format name, its signature as (offset, bytes) parts, whether a file is whole).
STRUCTURES = [
    ("PNG", [(0, b"\x89PNG\r\n\x1a\n")], _png_whole),
    ("JPEG", [(0, b"\xff\xd8\xff")], _jpeg_whole),
    ("GIF", [(0, b"GIF8")], _gif_whole),
    ("WEBP", [(0, b"RIFF"), (8, b"WEBP")], _riff_whole),
]


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says: a turned copy, or ``image`` itself
    when it is upright already (Pillow's ``exif_transpose`` copies it then too: 4.6 ms for
    a 1024 x 1024 photo, a tenth of what scoring one costs besides the model)."""
    # A broken EXIF block must not cost us the image: keep it as stored.
    with contextlib.suppress(Exception):
        if image.getexif().get(ExifTags.Base.Orientation, 1) == 1:
            return image
        return ImageOps.exif_transpose(image)
    return image


def decode_image(
    data: bytes, *, formats: Iterable[str], max_pixels: int, max_bytes: int | None, draft_size: int | None = None
) -> Image.Image:
    """Decode ``data`` into an upright RGB image; options and errors as ``open_image``."""
    return to_rgb(
        upright(open_image(data, formats=formats, max_pixels=max_pixels, max_bytes=max_bytes, draft_size=draft_size))
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparent pixels become white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips values over 255. Scale by the bit depth instead,
        # never by the image's own range: a uniform white must stay white, a mid grey
        # mid grey. Of the formats we decode only PNG has more than 8 bits a sample,
        # and its greyscale samples are 16 bits whether Pillow names the mode I;16 or I.
        array = np.asarray(image, dtype=np.int64) >> 8
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def encode_jpeg(image: Image.Image, *, max_side: int | None = None, quality: int = 90) -> bytes:
    """Re-encode an RGB image as JPEG, downscaled so its longer side is at most ``max_side``."""
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
