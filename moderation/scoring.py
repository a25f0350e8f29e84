"""Scores and flags: text/photo consistency, the category check, the duplicate check.

Plain functions over unit vectors, and no database: the task looks up the batch's
duplicate candidates (``moderation.duplicates``) and passes them in, so scoring can be
read and tested apart from the queue and the database.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
from django.core.signals import setting_changed
from django.db.models import Model

from .conf import moderation_settings
from .duplicates import find_duplicate
from .embedders import Embedder
from .models import FlagReason
from .registry import ModerationSpec


@dataclass
class Scores:
    consistency: float | None
    category_rank: int | None = None
    category_score: float | None = None
    suggested_categories: list[dict] = field(default_factory=list)
    duplicate_of: str = ""
    duplicate_similarity: float | None = None
    flag_reasons: list[str] = field(default_factory=list)
    severity: int = 0
    # What the scores were held against: ``thresholds_for`` the object's category
    # ({"CONSISTENCY_MIN": 0.2, ...}), and the id of the model that made the vectors.
    thresholds: dict = field(default_factory=dict)
    model_id: str = ""

    def as_dict(self) -> dict:
        """The scores as a ``Decision`` keeps them (``Decision.scores``): these keys, always."""
        return asdict(self)

    @classmethod
    def stored_on(cls, obj: Model) -> Scores:
        """The scores a moderated object holds in its own fields (None where not scored)."""
        return cls(
            consistency=obj.consistency_score,
            category_rank=obj.category_rank,
            category_score=obj.category_score,
            suggested_categories=list(obj.suggested_categories),
            duplicate_of=obj.duplicate_of,
            duplicate_similarity=obj.duplicate_similarity,
            flag_reasons=list(obj.flag_reasons),
            severity=obj.severity,
            thresholds=dict(obj.moderation_thresholds),
            model_id=obj.embedding_model,
        )


def thresholds_for(category: str | None) -> dict:
    """Global thresholds with the category's overrides on top."""
    overrides = moderation_settings.CATEGORY_THRESHOLDS.get(category, {}) if category else {}
    return {**moderation_settings.THRESHOLDS, **overrides}


@functools.lru_cache(maxsize=32)
def _category_matrix(embedder: Embedder, labels: tuple[str, ...], template: str) -> np.ndarray:
    return embedder.embed_texts([template.format(category=label) for label in labels])


def category_matrix(embedder: Embedder, labels: list[str]) -> np.ndarray:
    """Prompt embeddings of every category, cached per embedder, label set and template."""
    return _category_matrix(embedder, tuple(labels), moderation_settings.CATEGORY_PROMPT)


def _reset_category_matrix(*, setting: str, **kwargs) -> None:
    # A new MODERATION builds a new embedder: let the old one and its prompts go.
    if setting == "MODERATION":
        _category_matrix.cache_clear()


setting_changed.connect(_reset_category_matrix)


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


def score(
    spec: ModerationSpec,
    obj: Model,
    *,
    text_vector: np.ndarray,
    image_vector: np.ndarray,
    phash: int | None,
    labels: list[str],
    matrix: np.ndarray | None,
    candidates: list,
    earlier=(),
    model_id: str = "",
) -> Scores:
    """Scores and flag reasons of one object; ``candidates`` as ``find_duplicate`` takes them.
    ``model_id``: the embedder's, recorded with the thresholds the scores were held against."""
    category = spec.category_of(obj)
    limits = thresholds_for(category)
    scores = Scores(consistency=float(text_vector @ image_vector), thresholds=limits, model_id=model_id)
    if scores.consistency < limits["CONSISTENCY_MIN"]:
        scores.flag_reasons.append(FlagReason.TEXT_IMAGE_MISMATCH)
    if matrix is not None and category in labels:
        check = category_check(image_vector, category, labels, matrix)
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
        candidates=candidates,
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


def score_batch(
    spec: ModerationSpec,
    objs: list[Model],
    *,
    text_vectors,
    image_vectors,
    phashes: list,
    labels: list[str],
    matrix: np.ndarray | None,
    candidates: list[list],
    model_id: str = "",
) -> list[Scores]:
    """Scores of a batch of objects of one model, in order.

    ``labels`` are all categories and ``matrix`` their prompts' embeddings
    (``category_matrix``; None with fewer than two categories). ``candidates`` are each
    object's nearest photos in the database (``duplicates.duplicate_candidates``); each
    object is also compared with the ones before it in the batch, whose new vectors are
    not in the database yet.
    """
    results, earlier = [], []
    for obj, text_vector, image_vector, phash, found in zip(
        objs, text_vectors, image_vectors, phashes, candidates, strict=True
    ):
        results.append(
            score(
                spec,
                obj,
                text_vector=text_vector,
                image_vector=image_vector,
                phash=phash,
                labels=labels,
                matrix=matrix,
                candidates=found,
                earlier=earlier,
                model_id=model_id,
            )
        )
        earlier.append((obj.pk, spec.owner_id_of(obj), image_vector, phash))
    return results
