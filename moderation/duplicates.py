"""The duplicate check: the same picture used by another owner, the earliest upload the original.

The original of a picture is its earliest upload, whoever owns it: a listing is never a
duplicate of a later copy, and a rejected listing is nobody's original. The same owner
listing the same picture and text again is a ``repost`` of the owner's own original.

CLIP vectors of two different photos of similar things can be very close, so a
duplicate needs both: a photo vector close to another owner's (one index search per
photo, ``duplicate_candidates``) and a perceptual hash of the pixels within a few bits
(``image_phash``). The lookup reads the database; ``find_duplicate`` only compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from operator import attrgetter
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import BooleanField, Model, Value
from django.db.models.expressions import RawSQL
from pgvector.django import CosineDistance
from PIL import Image

from .conf import moderation_settings
from .models import FlagReason, ModerationStatus
from .registry import ModerationSpec
from .vectors import nearest_first, set_index_options, vector_literal


def image_phash(image: Image.Image) -> int:
    """A 64-bit difference hash of the pixels, as a signed integer for a bigint column.

    Close (``hamming``) only for the same picture: re-encoded, resized, recompressed.
    """
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    value = int("".join("1" if bit else "0" for bit in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


def same_picture(phash: int | None, other: int | None, max_distance: int) -> bool:
    """The pixels confirm what the vectors suggest (no hash on either side: trust the vectors)."""
    return phash is None or other is None or hamming(phash, other) <= max_distance


@dataclass(frozen=True)
class Candidate:
    """A photo close to an object's own: another object's key, perceptual hash, cosine
    similarity, whether its owner is the object's own, its ``upload_order`` and text."""

    pk: Any
    phash: int | None
    similarity: float
    same_owner: bool
    order: tuple
    text: str


def duplicate_query(
    spec: ModerationSpec, objs: list[Model], image_vectors, *, model_id: str, later: bool = False
) -> tuple[str, list]:
    """The statement of ``duplicate_candidates``: SQL and parameters.

    Each object's vector is one row of an unnested array, joined LATERAL to index
    searches of its neighbours: among other owners' objects and, for a repost, among
    its owner's own. Only objects uploaded before it (``ModerationSpec.upload_order``)
    and not rejected are searched: a later copy is never an original, nor is a listing
    a moderator refused. The inner queries are built by the ORM from the model's
    default manager (so the manager's own conditions hold) and refer to the outer row
    as ``q``. No distance condition in SQL: it would keep the planner off the HNSW
    index, so the thresholds are applied by the caller. With ``later``, objects of other
    owners uploaded *after* it are searched instead (``later_copies``).
    """
    model = spec.model
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)

    def column(field) -> str:
        return f"{table}.{quote(field.column)}"

    pk_field = model._meta.pk
    pk_type = pk_field.db_type(connection)
    before = ">" if later else "<"
    if spec.created_field:
        created = model._meta.get_field(spec.created_field)
        earlier = (
            f"({column(created)}, {column(pk_field)}) {before} "
            f"(q.created::{created.db_type(connection)}, q.pk::{pk_type})"
        )
        order_fields = [spec.created_field, "pk"]
    else:
        earlier, order_fields = f"{column(pk_field)} {before} q.pk::{pk_type}", ["pk"]
    base = (
        model._default_manager.filter(embedding_model=model_id, image_vector__isnull=False)
        .exclude(moderation_status=ModerationStatus.REJECTED)
        .filter(RawSQL(earlier, (), output_field=BooleanField()))
        .annotate(moderation_distance=CosineDistance("image_vector", RawSQL("q.v", ())))
        .order_by("moderation_distance")
    )
    columns = ["pk", "image_phash", "moderation_distance", "moderation_same_owner", *order_fields, *spec.text_fields]
    limit = moderation_settings.DUPLICATE_CANDIDATES
    owners = [None] * len(objs)
    if spec.owner_field:
        owner = model._meta.get_field(spec.owner_field)
        owner_type = owner.target_field.rel_db_type(connection) if owner.is_relation else owner.db_type(connection)
        # Another owner's object, or one without an owner; any object if ours has none.
        others = f"(q.owner IS NULL OR {column(owner)} IS DISTINCT FROM q.owner::{owner_type})"
        own = f"{column(owner)} = q.owner::{owner_type}"
        searches = [
            base.filter(RawSQL(others, (), output_field=BooleanField())).annotate(moderation_same_owner=Value(False)),
            base.filter(RawSQL(own, (), output_field=BooleanField())).annotate(moderation_same_owner=Value(True)),
        ][: 1 if later else 2]
        owners = [None if (value := spec.owner_id_of(obj)) is None else str(value) for obj in objs]
    else:
        searches = [base.annotate(moderation_same_owner=Value(False))]
    parts, inner_params = [], []
    for search in searches:
        sql, params = search.values_list(*columns)[:limit].query.sql_with_params()
        parts.append(f"({sql})")
        inner_params += params
    sql = (
        "SELECT q.i, c.* FROM unnest(%s::halfvec[], %s::text[], %s::text[], %s::text[]) "
        f"WITH ORDINALITY AS q(v, pk, owner, created, i) CROSS JOIN LATERAL ({' UNION ALL '.join(parts)}) AS c"
    )
    vectors = [vector_literal(vector) for vector in image_vectors]
    created_at = [str(spec.upload_order(obj)[0]) if spec.created_field else None for obj in objs]
    return sql, [vectors, [str(obj.pk) for obj in objs], owners, created_at, *inner_params]


def duplicate_candidates(
    spec: ModerationSpec, objs: list[Model], image_vectors, *, model_id: str, later: bool = False
) -> list[list]:
    """For each object, the photos nearest to its own among objects uploaded before it
    and not rejected: ``Candidate``s, nearest first, at most ``DUPLICATE_CANDIDATES``
    of other owners and as many of its own owner; with ``later``, at most
    ``DUPLICATE_CANDIDATES`` of other owners uploaded after it. One statement for the
    whole batch (``duplicate_query``)."""
    if not objs:
        return []
    sql, params = duplicate_query(spec, objs, image_vectors, model_id=model_id, later=later)
    found: list[list] = [[] for _ in objs]
    order_width = 2 if spec.created_field else 1
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        set_index_options(k=moderation_settings.DUPLICATE_CANDIDATES)
        cursor.execute(sql, params)
        for position, pk, phash, distance, same_owner, *rest in cursor.fetchall():
            order, texts = tuple(rest[:order_width]), rest[order_width:]
            found[position - 1].append(
                Candidate(pk, phash, 1.0 - float(distance), same_owner, order, spec.text_from(texts))
            )
    return [nearest_first(rows, distance=lambda c: -c.similarity) for rows in found]


def later_copies(spec: ModerationSpec, objs: list[Model], image_vectors, phashes, *, model_id: str, limits: list):
    """The objects that copy a picture of ``objs`` but were scored before it: of another
    owner, uploaded after it, showing the same picture (``limits``: each object's
    ``scoring.thresholds_for``), scored (``ok`` or ``flagged``) and not flagged as a
    ``duplicate_image``. A copy scored before its original (two workers, a second apart)
    found no earlier photo; it is rescanned once the original is written. Batch mates
    are left out: ``batch_candidates`` compares them. Returns model instances."""
    found = duplicate_candidates(spec, objs, image_vectors, model_id=model_id, later=True)
    keys = {
        candidate.pk
        for rows, phash, object_limits in zip(found, phashes, limits, strict=True)
        for candidate in rows
        if candidate.similarity >= object_limits["DUPLICATE_MIN_SIMILARITY"]
        and same_picture(phash, candidate.phash, object_limits["PHASH_MAX_DISTANCE"])
    } - {obj.pk for obj in objs}
    if not keys:
        return []
    scored = spec.model._default_manager.filter(
        pk__in=keys, moderation_status__in=[ModerationStatus.OK, ModerationStatus.FLAGGED]
    ).only("pk", "flag_reasons")
    return [obj for obj in scored if FlagReason.DUPLICATE_IMAGE not in obj.flag_reasons]


def same_text(text: str, other: str, min_similarity: float) -> bool:
    """Near-identical texts, as a reader compares them: difflib's ratio of the casefolded
    texts (0..1) at least ``min_similarity``. Vectors would not do: two texts about the
    same thing embed close whatever their wording."""
    return SequenceMatcher(None, text.casefold(), other.casefold()).ratio() >= min_similarity


def find_duplicate(
    phash: int | None,
    text: str,
    *,
    candidates: list[Candidate],
    limits: dict,
) -> tuple[str, Candidate] | None:
    """The original this photo copies, as (flag reason, candidate), or None.

    ``candidates`` were uploaded before this object and are not rejected
    (``duplicate_candidates``, and the batch's own from ``batch_candidates``). The
    original is the earliest of them showing the same picture, whoever owns it: of
    another owner, this object is its ``duplicate_image``; of the same owner, its
    ``repost`` when the texts are near-identical, else nothing (a later copy by another
    owner does not make the owner's own re-listing a copy). ``limits``:
    ``DUPLICATE_MIN_SIMILARITY``, ``PHASH_MAX_DISTANCE``, ``REPOST_MIN_TEXT_SIMILARITY``
    (``scoring.thresholds_for``).
    """
    same = [
        candidate
        for candidate in candidates
        if candidate.similarity >= limits["DUPLICATE_MIN_SIMILARITY"]
        and same_picture(phash, candidate.phash, limits["PHASH_MAX_DISTANCE"])
    ]
    if not same:
        return None
    original = min(same, key=attrgetter("order"))
    if not original.same_owner:
        return FlagReason.DUPLICATE_IMAGE, original
    if same_text(text, original.text, limits["REPOST_MIN_TEXT_SIMILARITY"]):
        return FlagReason.REPOST, original
    return None


def batch_candidates(spec: ModerationSpec, objs: list[Model], image_vectors, phashes, texts) -> list[list[Candidate]]:
    """For each object, the others of its batch uploaded before it and not rejected, as
    ``Candidate``s: their new vectors are not in the database yet."""
    entries = [
        (obj, spec.owner_id_of(obj), spec.upload_order(obj), vector, phash, text)
        for obj, vector, phash, text in zip(objs, image_vectors, phashes, texts, strict=True)
    ]
    found = []
    for _obj, owner, order, vector, _phash, _text in entries:
        found.append(
            [
                Candidate(
                    other.pk,
                    other_phash,
                    float(np.dot(other_vector, vector)),
                    owner is not None and other_owner == owner,
                    other_order,
                    other_text,
                )
                for other, other_owner, other_order, other_vector, other_phash, other_text in entries
                if other_order < order and other.moderation_status != ModerationStatus.REJECTED
            ]
        )
    return found
