"""The Embedder interface and the three classes of error every backend raises.

Callers decide what to do on the class of an error, never on its message:

- ``PermanentEmbedError``: this input cannot be embedded (a broken image, a request
  the provider refuses). Retrying will not help; the object goes to ``error``.
- ``TransientEmbedError``: try again later (rate limit, outage, a garbled answer).
  ``retry_after`` suggests how long to wait, in seconds, when the provider said so.
- ``EmbedderConfigurationError``: the embedder itself is wrong (bad API key, wrong
  dimension, missing model). Nothing will succeed until a person fixes settings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from PIL import Image


class EmbedderError(Exception):
    """Base class. ``code`` is a short stable identifier, stored with failed objects."""

    code = "embedder_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class PermanentEmbedError(EmbedderError):
    code = "invalid_input"

    def __init__(self, message: str, *, code: str | None = None, index: int | None = None) -> None:
        super().__init__(message, code=code)
        self.index = index  # which item of a batch, when known


class TransientEmbedError(EmbedderError):
    code = "unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class EmbedderConfigurationError(EmbedderError):
    code = "misconfigured"


class Embedder(ABC):
    """Turns texts and images into L2-normalised float32 vectors of one shared space.

    Subclasses set ``model_id`` (stored beside every vector, so vectors of two models
    are never compared) and ``dimensions``, and implement the two ``_embed_*`` hooks;
    the public methods validate and normalise what the hooks return.
    """

    model_id: str
    dimensions: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns an array of shape (len(texts), dimensions)."""
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        return self.validate(self._embed_texts(list(texts)), len(texts))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed decoded RGB images (see ``moderation.embedders.images.decode_image``)."""
        if not images:
            return np.empty((0, self.dimensions), dtype=np.float32)
        return self.validate(self._embed_images(list(images)), len(images))

    def embed(self, *, texts: Sequence[str], images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Embed a batch of texts and a batch of images. Override to run both at once."""
        return self.embed_texts(texts), self.embed_images(images)

    @abstractmethod
    def _embed_texts(self, texts: list[str]) -> np.ndarray: ...

    @abstractmethod
    def _embed_images(self, images: list[Image.Image]) -> np.ndarray: ...

    def estimated_cost(self, *, texts: int, images: int) -> float:
        """What embedding ``texts`` texts and ``images`` images is estimated to cost, in the
        provider's currency, for the embedder's account (``moderation.usage``); 0 for a
        model that runs here."""
        return 0.0

    def worst_case_seconds(self, batch_size: int) -> float | None:
        """The longest one task scoring ``batch_size`` objects can wait on calls out of the
        process, in seconds; None for an embedder that makes none. Checked against the
        queue's timeout (``moderation.checks``)."""
        return None

    def validate(self, vectors, expected_count: int) -> np.ndarray:
        """Check shape and values, then L2-normalise. Raises instead of returning a bad row."""
        try:
            array = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TransientEmbedError(
                f"{self.model_id} returned vectors that are not numbers: {exc}", code="bad_response"
            ) from exc
        if array.ndim != 2 or array.shape[0] != expected_count:
            raise TransientEmbedError(
                f"{self.model_id} returned an array of shape {array.shape} for {expected_count} inputs; "
                f"expected ({expected_count}, {self.dimensions}).",
                code="bad_response",
            )
        if array.shape[1] != self.dimensions:
            raise EmbedderConfigurationError(
                f"{self.model_id} returned {array.shape[1]}-dimension vectors, but {self.dimensions} are configured. "
                "Set the embedder's `dimensions` option to the model's real output size.",
                code="wrong_dimensions",
            )
        if not np.isfinite(array).all():
            raise TransientEmbedError(f"{self.model_id} returned NaN or infinite values.", code="bad_response")
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        zero = np.flatnonzero(norms[:, 0] < 1e-12)
        if zero.size:
            raise PermanentEmbedError(
                f"{self.model_id} returned an all-zero vector for input {zero[0]}; it cannot be compared.",
                code="zero_vector",
                index=int(zero[0]),
            )
        return array / norms

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_id} ({self.dimensions} dims)>"
