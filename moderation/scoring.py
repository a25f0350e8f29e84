"""Scores and flags: text/photo consistency, the category check, the duplicate check.

Plain functions over unit vectors (and one nearest-neighbour query for duplicates),
so they can be read and tested apart from the queue.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np
from django.db import connection, transaction
from django.db.models import BooleanField, Model
from django.db.models.expressions import RawSQL
from pgvector.django import CosineDistance
from PIL import Image

from . import search
from .conf import moderation_settings
from .embedders import Embedder
from .models import FlagReason
from .registry import ModerationSpec
from .vectors import vector_literal


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
        )


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


def duplicate_query(spec: ModerationSpec, objs: list[Model], image_vectors, *, model_id: str) -> tuple[str, list]:
    """The statement of ``duplicate_candidates``: SQL and parameters.

    Each object's vector is one row of an unnested array, joined LATERAL to an index
    search of its neighbours. The inner query is built by the ORM from the model's
    default manager (so the manager's own conditions hold) and refers to the outer row
    as ``q``. No distance condition in SQL: it would keep the planner off the HNSW
    index, so the thresholds are applied by the caller.
    """
    model = spec.model
    quote = connection.ops.quote_name
    inner = model._default_manager.filter(embedding_model=model_id, image_vector__isnull=False)
    inner = inner.exclude(pk=RawSQL(f"q.pk::{model._meta.pk.db_type(connection)}", ()))
    owners = [None] * len(objs)
    if spec.owner_field:
        field = model._meta.get_field(spec.owner_field)
        column = f"{quote(model._meta.db_table)}.{quote(field.column)}"
        owner_type = field.target_field.rel_db_type(connection) if field.is_relation else field.db_type(connection)
        # Another owner's object, or one without an owner; any object if ours has none.
        other_owner = f"(q.owner IS NULL OR {column} IS DISTINCT FROM q.owner::{owner_type})"
        inner = inner.filter(RawSQL(other_owner, (), output_field=BooleanField()))
        owners = [None if (owner := spec.owner_id_of(obj)) is None else str(owner) for obj in objs]
    inner = (
        inner.annotate(moderation_distance=CosineDistance("image_vector", RawSQL("q.v", ())))
        .order_by("moderation_distance")
        .values_list("pk", "image_phash", "moderation_distance")[: moderation_settings.DUPLICATE_CANDIDATES]
    )
    inner_sql, inner_params = inner.query.sql_with_params()
    sql = (
        "SELECT q.i, c.* FROM unnest(%s::halfvec[], %s::text[], %s::text[]) WITH ORDINALITY AS q(v, pk, owner, i) "
        f"CROSS JOIN LATERAL ({inner_sql}) AS c"
    )
    vectors = [vector_literal(vector) for vector in image_vectors]
    return sql, [vectors, [str(obj.pk) for obj in objs], owners, *inner_params]


def duplicate_candidates(spec: ModerationSpec, objs: list[Model], image_vectors, *, model_id: str) -> list[list]:
    """For each object, the photos nearest to its own among other owners' objects:
    [(pk, phash, similarity), ...], best first, ``DUPLICATE_CANDIDATES`` at most.
    One statement for the whole batch (``duplicate_query``)."""
    if not objs:
        return []
    sql, params = duplicate_query(spec, objs, image_vectors, model_id=model_id)
    candidates: list[list] = [[] for _ in objs]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        search.search_settings(k=moderation_settings.DUPLICATE_CANDIDATES)
        cursor.execute(sql, params)
        for position, pk, phash, distance in cursor.fetchall():
            candidates[position - 1].append((pk, phash, 1.0 - float(distance)))
    for found in candidates:  # relaxed_order may return neighbours slightly out of order
        found.sort(key=lambda candidate: -candidate[2])
    return candidates


def find_duplicate(
    spec: ModerationSpec,
    obj: Model,
    image_vector: np.ndarray,
    phash: int | None,
    *,
    candidates: list,
    min_similarity: float,
    max_phash_distance: int,
    earlier=(),
) -> tuple[str, float] | None:
    """The closest photo of another owner's object that is the same picture, if any.

    ``candidates`` are the object's nearest photos in the database
    (``duplicate_candidates``); ``earlier`` holds (pk, owner id, image vector, phash)
    of objects scored before this one in the same batch, which are not in the
    database yet.
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
    for pk, other_phash, similarity in candidates:
        if similarity < min_similarity:
            break
        if same_picture(phash, other_phash, max_phash_distance):
            return str(pk), similarity
    return None


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
) -> Scores:
    """Scores and flag reasons of one object (``score_batch`` looks up what they need)."""
    category = spec.category_of(obj)
    limits = thresholds_for(category)
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
    model_id: str,
    labels: list[str],
    matrix: np.ndarray | None,
) -> list[Scores]:
    """Scores of a batch of objects of one model, in order.

    ``labels`` are all categories and ``matrix`` their prompts' embeddings
    (``category_matrix``; None with fewer than two categories). The duplicate
    candidates of the whole batch come from one query; each object is also compared
    with the ones before it in the batch, whose new vectors are not in the database yet.
    """
    candidates = duplicate_candidates(spec, objs, image_vectors, model_id=model_id)
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
            )
        )
        earlier.append((obj.pk, spec.owner_id_of(obj), image_vector, phash))
    return results


# Copies of one picture (re-encoded, resized) hash within a few bits of each other. The
# locks cover copies within this many bits: with more, a hash is cut into so many short
# bands that unrelated batches share keys and two workers' writes take turns (measured:
# bands for 6 bits halved the pipeline's rate; docs/pipeline.md). A concurrent pair of
# copies further apart than this may still both be scored as originals.
LOCKED_DISTANCE = 2


def picture_keys(spec: ModerationSpec, phash: int) -> set[int]:
    """Lock keys that two hashes of the same picture share.

    The 64-bit hash is cut into ``LOCKED_DISTANCE`` + 1 bands: two hashes that differ
    in at most that many bits agree on one band at least (pigeonhole), so they share
    that band's key.
    """
    bands = LOCKED_DISTANCE + 1
    bits = phash & ((1 << 64) - 1)
    keys, start = set(), 0
    for band in range(bands):
        width = 64 // bands + (band < 64 % bands)
        value = (bits >> start) & ((1 << width) - 1)
        start += width
        digest = hashlib.blake2b(f"{spec.label}:{band}:{value}".encode(), digest_size=8).digest()
        keys.add(int.from_bytes(digest, "big", signed=True))
    return keys


def lock_pictures(spec: ModerationSpec, phashes: list) -> None:
    """Inside the transaction that checks duplicates and writes the scores: wait for any
    other task scoring the same picture to commit (transaction advisory locks, single
    bigint keys, a key space apart from the two-integer keys of ``claims``). Taken in
    sorted order, so two tasks cannot deadlock on them."""
    keys = sorted(set().union(*(picture_keys(spec, phash) for phash in phashes if phash is not None)))
    if keys:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", [keys])
