"""Thumbnails for the admin's lists: a small copy of each photo, made once and cached by
sorl-thumbnail, never the original scaled by CSS (50 rows would download 50 originals).

sorl-thumbnail keeps a key-value store of the copies it made (a table of its own,
read through the cache), so a list asks the storage nothing for a copy it already
has; it writes through any Django storage. The host adds ``"sorl.thumbnail"`` to
``INSTALLED_APPS`` (docs/admin.md).
"""

from __future__ import annotations

from sorl.thumbnail import get_thumbnail

from moderation.registry import get_spec

# Error codes of a photo that cannot be decoded: no thumbnail is tried (each try would
# decode it again in the request).
UNREADABLE = {
    "image_format",
    "image_too_large",
    "image_pixels",
    "image_truncated",
    "image_corrupt",
    "image_missing",
    "image_empty",
}


def thumbnail_url(obj, size: int) -> str | None:
    """The URL of a ``size`` x ``size`` JPEG of ``obj``'s photo, cropped to its centre
    (twice as many pixels, for high-density screens, are not made: a list needs a hint,
    the change page shows the original). None without a readable photo."""
    image = getattr(obj, get_spec(type(obj)).image_field)
    if not image or obj.moderation_error in UNREADABLE:
        return None
    return get_thumbnail(image, f"{size}x{size}", crop="center", quality=80, format="JPEG").url
