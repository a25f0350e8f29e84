"""Scores and flags: text/photo consistency, the category check, the duplicate check.

Plain functions over unit vectors (and one nearest-neighbour query for duplicates),
so they can be read and tested apart from the queue.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
from django.db.models import Model
from PIL import Image

from . import search
from .conf import moderation_settings
from .embedders import Embedder
from .models import FlagReason
from .registry import ModerationSpec


@dataclass
class Scores:
    consistency: float
    category_rank: int | None = None
    category_score: float | None = None
    suggested_categories: list[dict] = field(default_factory=list)
    duplicate_of: str = ""
    duplicate_similarity: float | None = None
    flag_reasons: list[str] = field(default_factory=list)
    severity: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def thresholds_for(category: str | None) -> dict:
    """Global thresholds with the category's overrides on top."""
    overrides = moderation_settings.CATEGORY_THRESHOLDS.get(category, {}) if category else {}
    return {**moderation_settings.THRESHOLDS, **overrides}


def image_phash(image: Image.Image) -> int:
    """A 64-bit difference hash of the pixels, as a signed integer for a bigint column.

    CLIP vectors of two different photos of similar things can be very close; this
    hash is close only for the same picture (re-encoded, resized, recompressed), so a
    duplicate needs both.
    """
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    value = int("".join("1" if bit else "0" for bit in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


@functools.lru_cache(maxsize=32)
def _category_matrix(embedder: Embedder, labels: tuple[str, ...], template: str) -> np.ndarray:
    return embedder.embed_texts([template.format(category=label) for label in labels])


def category_matrix(embedder: Embedder, labels: list[str]) -> np.ndarray:
    """Prompt embeddings of every category, cached per embedder, label set and template."""
    return _category_matrix(embedder, tuple(labels), moderation_settings.CATEGORY_PROMPT)


def category_check(image_vector: np.ndarray, category: str, labels: list[str], matrix: np.ndarray) -> dict:
    """Zero-shot rank of the listed category among all, by the photo's similarity.

    Ties count in the listing's favour: a model that cannot tell the categories apart
    (like the demo model) ranks every category first and flags nothing.
    """
    similarities = matrix @ image_vector
    listed = similarities[labels.index(category)]
    rank = int((similarities > listed + 1e-6).sum()) + 1
    order = np.argsort(-similarities)[:3]
    suggested = [{"category": labels[i], "score": round(float(similarities[i]), 4)} for i in order]
    return {"category_rank": rank, "category_score": float(listed), "suggested_categories": suggested}


def same_picture(phash: int | None, other: int | None, max_distance: int) -> bool:
    """The pixels confirm what the vectors suggest (no hash on either side: trust the vectors)."""
    return phash is None or other is None or hamming(phash, other) <= max_distance


def find_duplicate(
    spec: ModerationSpec,
    obj: Model,
    image_vector: np.ndarray,
    phash: int | None,
    *,
    model_id: str,
    min_similarity: float,
    max_phash_distance: int,
    earlier=(),
) -> tuple[str, float] | None:
    """The closest photo of another owner's object that is the same picture, if any.

    ``earlier`` holds (pk, owner id, image vector, phash) of objects scored before this
    one in the same batch, which are not in the database yet.
    """
    owner = spec.owner_id_of(obj)
    for pk, other_owner, vector, other_phash in earlier:
        similarity = float(np.dot(vector, image_vector))
        if (
            (owner is None or other_owner != owner)
            and similarity >= min_similarity
            and same_picture(phash, other_phash, max_phash_distance)
        ):
            return str(pk), similarity
    queryset = spec.model._default_manager.exclude(pk=obj.pk).filter(
        embedding_model=model_id, image_vector__isnull=False
    )
    if owner is not None:
        queryset = queryset.exclude(**{spec.model._meta.get_field(spec.owner_field).attname: owner})
    # Top candidates through the HNSW index; the thresholds are applied to them here.
    # (A distance condition in SQL would keep the planner off the index.)
    candidates = search.nearest(
        queryset.only("pk", "image_phash"), "image_vector", image_vector, k=moderation_settings.DUPLICATE_CANDIDATES
    )
    for hit in candidates:
        if hit.score < min_similarity:
            break
        if same_picture(phash, hit.object.image_phash, max_phash_distance):
            return str(hit.object.pk), hit.score
    return None


def score(
    spec: ModerationSpec,
    obj: Model,
    *,
    text_vector: np.ndarray,
    image_vector: np.ndarray,
    phash: int | None,
    embedder: Embedder,
    labels: list[str] | None = None,
    earlier=(),
) -> Scores:
    """Scores and flag reasons of one object. ``labels`` (all categories) may be passed
    in by a caller that scores a batch, to look them up once."""
    category = spec.category_of(obj)
    limits = thresholds_for(category)
    scores = Scores(consistency=float(text_vector @ image_vector))
    if scores.consistency < limits["CONSISTENCY_MIN"]:
        scores.flag_reasons.append(FlagReason.TEXT_IMAGE_MISMATCH)
    labels = spec.category_labels() if labels is None else labels
    if category and category in labels and len(labels) > 1:
        check = category_check(image_vector, category, labels, category_matrix(embedder, labels))
        scores.category_rank = check["category_rank"]
        scores.category_score = check["category_score"]
        scores.suggested_categories = check["suggested_categories"]
        if scores.category_rank > limits["CATEGORY_MAX_RANK"]:
            scores.flag_reasons.append(FlagReason.CATEGORY_MISMATCH)
    duplicate = find_duplicate(
        spec,
        obj,
        image_vector,
        phash,
        model_id=embedder.model_id,
        min_similarity=limits["DUPLICATE_MIN_SIMILARITY"],
        max_phash_distance=limits["PHASH_MAX_DISTANCE"],
        earlier=earlier,
    )
    if duplicate:
        scores.duplicate_of, scores.duplicate_similarity = duplicate
        scores.flag_reasons.append(FlagReason.DUPLICATE_IMAGE)
    weights = moderation_settings.REASON_SEVERITY
    scores.flag_reasons = [str(reason) for reason in scores.flag_reasons]
    scores.severity = sum(weights.get(reason, 0) for reason in scores.flag_reasons)
    return scores
