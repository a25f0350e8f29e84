"""Embedders turn texts and images into unit vectors of one space.

The backend is chosen by dotted path in ``MODERATION["EMBEDDER"]["BACKEND"]`` and
built once per process with ``MODERATION["EMBEDDER"]["OPTIONS"]`` as keyword
arguments (see docs/embedders.md).
"""

from __future__ import annotations

import functools

from django.core.signals import setting_changed
from django.utils.module_loading import import_string
from PIL import Image

from moderation.conf import moderation_settings

from .base import (
    Embedder,
    EmbedderConfigurationError,
    EmbedderError,
    PermanentEmbedError,
    TransientEmbedError,
)
from .images import open_image, to_rgb, upright

__all__ = [
    "Embedder",
    "EmbedderConfigurationError",
    "EmbedderError",
    "PermanentEmbedError",
    "TransientEmbedError",
    "decode_listing_image",
    "get_embedder",
    "open_listing_image",
]


@functools.cache
def get_embedder() -> Embedder:
    """The configured embedder, built once per process and kept warm."""
    config = moderation_settings.EMBEDDER
    path = config.get("BACKEND")
    try:
        backend = import_string(path)
    except ImportError as exc:
        raise EmbedderConfigurationError(
            f"MODERATION['EMBEDDER']['BACKEND'] = {path!r} cannot be imported: {exc}. "
            "Use a dotted path such as 'moderation.embedders.onnx_clip.OnnxClipEmbedder'."
        ) from exc
    try:
        return backend(**config.get("OPTIONS", {}))
    except TypeError as exc:
        raise EmbedderConfigurationError(f"MODERATION['EMBEDDER']['OPTIONS'] do not fit {path}: {exc}.") from exc


def _reset_embedder(*, setting: str, **kwargs) -> None:
    # A new MODERATION may name another backend or other options: build it again.
    if setting == "MODERATION":
        get_embedder.cache_clear()


setting_changed.connect(_reset_embedder)


def open_listing_image(data: bytes, *, draft_size: int | None = None) -> Image.Image:
    """Check and fully decode an uploaded photo with the configured limits
    (``IMAGE_FORMATS``, ``IMAGE_MAX_BYTES``, ``IMAGE_MAX_PIXELS``): ``images.open_image``.
    The one rule of what a photo may be, for the pipeline and for uploads alike."""
    return open_image(
        data,
        formats=moderation_settings.IMAGE_FORMATS,
        max_pixels=moderation_settings.IMAGE_MAX_PIXELS,
        max_bytes=moderation_settings.IMAGE_MAX_BYTES,
        draft_size=draft_size,
    )


def decode_listing_image(data: bytes, *, embedder: Embedder | None = None) -> Image.Image:
    """Decode an uploaded photo with the configured limits into upright RGB, sized for ``embedder``."""
    return to_rgb(upright(open_listing_image(data, draft_size=getattr(embedder, "image_size", None))))
