"""The app's settings: one dict, ``settings.MODERATION``, read through ``moderation_settings``.

Each key has a default here. Values are read once and cached; the cache is reset on
Django's ``setting_changed`` signal, so ``override_settings(MODERATION=...)`` works in
tests.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # The embedder: a dotted path to a class and the keyword options it is built with.
    # See docs/embedders.md. No default model is guessed: the local ONNX backend needs
    # a model folder (or an allowed download), a hosted backend a URL.
    "EMBEDDER": {
        "BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder",
        "OPTIONS": {},
    },
    # Untrusted photos: formats we decode, and the largest image we decode at all.
    "IMAGE_FORMATS": ["JPEG", "PNG", "WEBP", "GIF"],
    "IMAGE_MAX_PIXELS": 40_000_000,
    "IMAGE_MAX_BYTES": 15 * 1024 * 1024,
}


class ModerationSettings:
    """Attribute access to ``settings.MODERATION`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    @property
    def _merged(self) -> dict[str, Any]:
        if self._cache is None:
            user = getattr(settings, "MODERATION", {}) or {}
            unknown = set(user) - set(DEFAULTS)
            if unknown:
                raise AttributeError(
                    f"Unknown MODERATION setting(s): {', '.join(sorted(unknown))}. "
                    f"Known settings: {', '.join(sorted(DEFAULTS))}."
                )
            self._cache = {**DEFAULTS, **user}
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._merged[name]
        except KeyError:
            raise AttributeError(f"No MODERATION setting named {name!r}.") from None

    def reload(self) -> None:
        self._cache = None


moderation_settings = ModerationSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "MODERATION":
        moderation_settings.reload()
        from moderation.embedders import get_embedder

        get_embedder.cache_clear()


setting_changed.connect(_reload)
