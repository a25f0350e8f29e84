"""Safe decoding and normalising of untrusted images, shared by every backend.

A seller's upload is hostile until decoded: it may be another format in disguise, a
decompression bomb, a truncated file, or an odd mode (CMYK, 16-bit, palette with
transparency). ``decode_image`` turns it into an upright RGB image or raises a
``PermanentEmbedError`` whose ``code`` says what was wrong.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .base import PermanentEmbedError

# Keep our own cap below Pillow's bomb limit, so ours is the one that answers.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def decode_image(
    data: bytes,
    *,
    formats: Iterable[str] = DEFAULT_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int | None = None,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode ``data`` into an upright RGB image.

    ``draft_size`` lets JPEG decoding scale down by 2, 4 or 8 while the result stays
    at least that many pixels on its shorter side: a large photo that will be resized
    to 224 pixels decodes several times faster.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise PermanentEmbedError(
            f"The image is {len(data)} bytes; at most {max_bytes} are accepted.", code="image_too_large"
        )
    if not data:
        raise PermanentEmbedError("The image file is empty.", code="image_empty")
    formats = [fmt.upper() for fmt in formats]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=formats)
        except UnidentifiedImageError:
            raise PermanentEmbedError(
                f"The file is not an image in an accepted format ({', '.join(formats)}).", code="image_format"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PermanentEmbedError("The image has too many pixels to decode safely.", code="image_pixels") from None
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
        try:
            image.load()  # the first frame of a GIF or an animated WebP
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PermanentEmbedError("The image has too many pixels to decode safely.", code="image_pixels") from None
        except OSError as exc:
            code = "image_truncated" if "truncated" in str(exc) else "image_corrupt"
            raise PermanentEmbedError(f"The image could not be decoded: {exc}.", code=code) from None
        except (SyntaxError, ValueError, EOFError, IndexError) as exc:
            raise PermanentEmbedError(f"The image could not be decoded: {exc}.", code="image_corrupt") from None
    # A broken EXIF block must not cost us the image: keep it as stored.
    with contextlib.suppress(Exception):
        image = ImageOps.exif_transpose(image)
    return to_rgb(image)


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
    if image.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        # Pillow's own conversion clips high bit depths to 255; scale them instead.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def encode_jpeg(image: Image.Image, *, max_side: int | None = None, quality: int = 90) -> bytes:
    """Re-encode an RGB image as JPEG, downscaled so its longer side is at most ``max_side``."""
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
