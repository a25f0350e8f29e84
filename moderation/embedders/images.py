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
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .base import PermanentEmbedError

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
        except UnidentifiedImageError:
            raise PermanentEmbedError(
                f"The file is not an image in an accepted format ({', '.join(formats)}).", code="image_format"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PermanentEmbedError("The image has too many pixels to decode safely.", code="image_pixels") from None
        except Exception as exc:
            # Decoders of hostile bytes raise what they raise (OSError, SyntaxError,
            # ValueError, EOFError, struct.error ...; WebP already in Image.open): all of
            # them mean this file cannot be decoded, never a fault worth a retry.
            if _is_truncated(data, exc):
                raise PermanentEmbedError(
                    f"The image is truncated: the file ends before the picture does ({exc}).", code="image_truncated"
                ) from None
            raise PermanentEmbedError(f"The image could not be decoded: {exc}.", code="image_corrupt") from None
    return image


def _is_truncated(data: bytes, exc: Exception) -> bool:
    """Whether a decoding error comes from a file cut short: Pillow says so for JPEG, PNG
    and GIF; a WebP (RIFF) file declares its own length in its header."""
    if data[:4] == b"RIFF" and len(data) >= 8:
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    return "truncated" in str(exc)


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (a copy without the ``format``)."""
    # A broken EXIF block must not cost us the image: keep it as stored.
    with contextlib.suppress(Exception):
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
