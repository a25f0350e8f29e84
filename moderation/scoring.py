"""Scores and flags: text/photo consistency, the category check, prohibited items, the
duplicate check.

Plain functions over unit vectors, and no database: the task looks up the batch's
duplicate candidates (``moderation.duplicates``) and the stored thresholds
(``moderation.thresholds``) and passes them in, so scoring can be read and tested
apart from the queue and the database.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
from django.core.signals import setting_changed
from django.db.models import Model

from . import duplicates
from .conf import DEFAULTS, moderation_settings
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
    prohibited_items: list[dict] = field(default_factory=list)
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
            prohibited_items=list(obj.prohibited_items),
            flag_reasons=list(obj.flag_reasons),
            severity=obj.severity,
            thresholds=dict(obj.moderation_thresholds),
            model_id=obj.embedding_model,
        )


def thresholds_for(category: str | None, *, stored: dict | None = None) -> dict:
    """The thresholds an object of ``category`` is held against: {key: value}.

    From the weakest to the strongest: the defaults (``conf.DEFAULTS``), the site's
    ``THRESHOLDS``, the database's thresholds for every category, the site's
    ``CATEGORY_THRESHOLDS`` for this one, the database's for this one. ``stored`` is
    ``moderation.thresholds.stored(label)``: {(category or "", key): value}; the task
    reads it once per batch, so this stays a pure function.
    """
    stored = stored or {}
    overrides = moderation_settings.CATEGORY_THRESHOLDS.get(category, {}) if category else {}
    return {
        **DEFAULTS["THRESHOLDS"],
        **moderation_settings.THRESHOLDS,
        **{key: value for (where, key), value in stored.items() if where == ""},
        **overrides,
        **{key: value for (where, key), value in stored.items() if category and where == category},
    }


def _mean_prompts(embedder: Embedder, groups: list[list[str]]) -> np.ndarray:
    """One row per group of prompts: the mean of their embeddings, normalised."""
    vectors = embedder.embed_texts([prompt for group in groups for prompt in group])
    rows, start = [], 0
    for group in groups:
        mean = vectors[start : start + len(group)].mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
        start += len(group)
    return np.stack(rows).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _category_matrix(embedder: Embedder, categories: tuple, templates: tuple[str, ...]) -> np.ndarray:
    return _mean_prompts(
        embedder,
        [
            [template.format(category=name) for name in (label, *things) for template in templates]
            for label, things in categories
        ],
    )


def category_matrix(embedder: Embedder, labels: list[str], descriptions: dict | None = None) -> np.ndarray:
    """Prompt embeddings of every category, one row per label: every template of
    ``CATEGORY_PROMPTS`` filled with the label and with each thing its description names
    (``ModerationSpec.category_descriptions``), averaged and normalised. Cached per
    embedder (its model), categories, descriptions and templates: a new or renamed
    category, or a new description, is a new key."""
    descriptions = descriptions or {}
    categories = tuple((label, tuple(descriptions.get(label, ()))) for label in labels)
    return _category_matrix(embedder, categories, tuple(moderation_settings.CATEGORY_PROMPTS))


@functools.lru_cache(maxsize=8)
def _concept_matrix(embedder: Embedder, prompts: tuple[tuple[str, ...], ...]) -> np.ndarray:
    return _mean_prompts(embedder, [list(group) for group in prompts])


def concept_matrix(embedder: Embedder) -> np.ndarray | None:
    """The ``PROHIBITED_CONCEPTS``' prompt embeddings, one row per concept, averaged and
    normalised; None without concepts. Cached per embedder and prompts."""
    concepts = moderation_settings.PROHIBITED_CONCEPTS
    if not concepts:
        return None
    return _concept_matrix(embedder, tuple(tuple(concept["prompts"]) for concept in concepts))


def _reset_prompt_matrices(*, setting: str, **kwargs) -> None:
    # A new MODERATION builds a new embedder: let the old one and its prompts go.
    if setting == "MODERATION":
        _category_matrix.cache_clear()
        _concept_matrix.cache_clear()


setting_changed.connect(_reset_prompt_matrices)


def category_check(image_vector: np.ndarray, category: str, labels: list[str], matrix: np.ndarray) -> dict:
    """Zero-shot rank of the listed category among all, by the photo's similarity.

    Ties count in the listing's favour: a model that cannot tell the categories apart
    (like the demo model) ranks every category first and flags nothing. The three
    suggestions are in the rank's order: the listed category comes first among those tied
    with it, so that "ranks #1" is never shown beside another category listed first.
    """
    similarities = matrix @ image_vector
    position = labels.index(category)
    listed = similarities[position]
    rank = int((similarities > listed + 1e-6).sum()) + 1
    tied = np.abs(similarities - listed) <= 1e-6
    order = sorted(range(len(labels)), key=lambda i: (-(listed if tied[i] else similarities[i]), i != position, i))[:3]
    suggested = [{"category": labels[i], "score": round(float(similarities[i]), 4)} for i in order]
    return {"category_rank": rank, "category_score": float(listed), "suggested_categories": suggested}


def prohibited_check(text_vector: np.ndarray, image_vector: np.ndarray, matrix: np.ndarray) -> list[dict]:
    """The ``PROHIBITED_CONCEPTS`` the photo or the text is at least as close to as the
    concept's ``threshold``: [{"concept", "on": "photo"|"text", "score", "threshold"}],
    the closer of the two for each concept. ``matrix`` is ``concept_matrix``."""
    found = []
    for concept, photo, text in zip(
        moderation_settings.PROHIBITED_CONCEPTS, matrix @ image_vector, matrix @ text_vector, strict=True
    ):
        on, closest = ("photo", photo) if photo >= text else ("text", text)
        if closest >= concept["threshold"]:
            score = round(float(closest), 4)
            found.append({"concept": concept["name"], "on": on, "score": score, "threshold": concept["threshold"]})
    return found


def score_vectors(
    text_vector: np.ndarray,
    image_vector: np.ndarray,
    *,
    category: str | None,
    labels: list[str],
    matrix: np.ndarray | None,
    concepts: np.ndarray | None,
    limits: dict,
) -> Scores:
    """The checks of one text and photo that need no other object: consistency, the
    category check, prohibited items; ``limits`` from ``thresholds_for``. Flag reasons
    without severity (``score`` adds the duplicate check and the severity)."""
    scores = Scores(consistency=float(text_vector @ image_vector))
    if scores.consistency < limits["CONSISTENCY_MIN"]:
        scores.flag_reasons.append(FlagReason.TEXT_IMAGE_MISMATCH)
    if matrix is not None and category in labels:
        check = category_check(image_vector, category, labels, matrix)
        scores.category_rank = check["category_rank"]
        scores.category_score = check["category_score"]
        scores.suggested_categories = check["suggested_categories"]
        if scores.category_rank > limits["CATEGORY_MAX_RANK"]:
            scores.flag_reasons.append(FlagReason.CATEGORY_MISMATCH)
    if concepts is not None:
        scores.prohibited_items = prohibited_check(text_vector, image_vector, concepts)
        if scores.prohibited_items:
            scores.flag_reasons.append(FlagReason.PROHIBITED_ITEM)
    return scores


def with_severity(scores: Scores) -> Scores:
    """``scores`` with its reasons as plain codes and their severity (``REASON_SEVERITY``)."""
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
    concepts: np.ndarray | None,
    candidates: list[list],
    stored: dict,
    model_id: str = "",
) -> list[Scores]:
    """Scores of a batch of objects of one model, in order.

    ``labels`` are all categories and ``matrix`` their prompts' embeddings
    (``category_matrix``; None with fewer than two categories); ``concepts`` is
    ``concept_matrix``. ``candidates`` are each object's nearest earlier photos in the
    database (``duplicates.duplicate_candidates``); each object is also compared with
    the others of the batch uploaded before it, whose new vectors are not in the
    database yet. ``stored``: ``thresholds.stored(spec.label)``. ``model_id``: the
    embedder's, recorded with the thresholds each object was held against.
    """
    texts = [spec.text_of(obj) for obj in objs]
    in_batch = {obj.pk for obj in objs}
    own = duplicates.batch_candidates(spec, objs, image_vectors, phashes, texts)
    results = []
    for obj, text, text_vector, image_vector, phash, found, mates in zip(
        objs, texts, text_vectors, image_vectors, phashes, candidates, own, strict=True
    ):
        category = spec.category_of(obj)
        limits = thresholds_for(category, stored=stored)
        scores = score_vectors(
            text_vector, image_vector, category=category, labels=labels, matrix=matrix, concepts=concepts, limits=limits
        )
        scores.thresholds, scores.model_id = limits, model_id
        # The batch's own vectors are newer than the database's.
        earlier = [candidate for candidate in found if candidate.pk not in in_batch] + mates
        duplicate = duplicates.find_duplicate(phash, text, candidates=earlier, limits=limits)
        if duplicate:
            reason, original = duplicate
            scores.duplicate_of, scores.duplicate_similarity = str(original.pk), original.similarity
            scores.flag_reasons.append(reason)
        rejected = duplicates.rejected_copy(phash, candidates=earlier, limits=limits, of=obj.pk)
        if rejected:
            if not duplicate:  # the review panel shows the two photos side by side
                scores.duplicate_of, scores.duplicate_similarity = str(rejected.pk), rejected.similarity
            scores.flag_reasons.append(FlagReason.RESUBMITTED)
        results.append(with_severity(scores))
    return results
