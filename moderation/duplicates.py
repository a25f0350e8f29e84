"""The duplicate check: the same picture used by another owner, the earliest upload the original.

The original of a picture is its earliest upload, whoever owns it: a listing is never a
duplicate of a later copy, and a rejected listing is nobody's original. The same owner
listing the same picture and text again is a ``repost`` of the owner's own original,
and listing a picture of its own rejected listing again is ``resubmitted``.

CLIP vectors of two different photos of similar things can be very close, so a
duplicate needs both: a photo vector close to another owner's (one index search per
photo, ``duplicate_candidates``) and a perceptual hash of the pixels within a few bits
(``image_phash``). The lookup reads the database; ``find_duplicate`` only compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Model, Q, Value
from django.db.models.expressions import RawSQL
from pgvector.django import CosineDistance
from PIL import Image

from .conf import moderation_settings
from .models import FlagReason, ModerationStatus, RejectedPhoto
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
    # Rejected by a moderator: nobody's original, but its owner's new copy of it is
    # ``resubmitted`` (``rejected_copy``). Only the owner's own search returns these.
    rejected: bool = False


class Found(NamedTuple):
    """What ``duplicate_candidates`` found for each object of a batch, in the batch's
    order: ``Candidate`` lists, nearest first."""

    earlier: list[list[Candidate]]
    later: list[list[Candidate]]


def duplicate_query(
    spec: ModerationSpec, objs: list[Model], image_vectors, *, model_id: str, limits: list | None = None
) -> tuple[str, list]:
    """The statement of ``duplicate_candidates``: SQL and parameters.

    Each object's vector is one row of an unnested array, joined LATERAL to index
    searches of its neighbours: among other owners' objects and, for a repost, among
    its owner's own, uploaded before it (``ModerationSpec.upload_order``) and not
    rejected: a later copy is never an original, nor is a listing a moderator refused
    (the owner's own search also returns the owner's rejected objects, uploaded before or
    after, marked ``moderation_rejected``, for ``rejected_copy``);
    and among other owners' objects uploaded *after* it (``later_copies``), a column
    ``moderation_later`` telling which. The inner queries are built by the ORM from the
    model's default manager (so the manager's own conditions hold) and refer to the
    outer row as ``q``. No distance condition inside them: it would keep the planner off
    the HNSW index. With ``limits``, the rows the searches return are filtered outside
    them (a LIMIT keeps the condition out of the searches), and ``objs`` are left out of
    the searches.
    """
    model = spec.model
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)

    def column(field) -> str:
        return f"{table}.{quote(field.column)}"

    pk_field = model._meta.pk
    pk_type = pk_field.db_type(connection)
    if spec.created_field:
        created = model._meta.get_field(spec.created_field)
        order = (
            f"({column(created)}, {column(pk_field)}) %s (q.created::{created.db_type(connection)}, q.pk::{pk_type})"
        )
        order_fields = [spec.created_field, "pk"]
    else:
        order, order_fields = f"{column(pk_field)} %s q.pk::{pk_type}", ["pk"]
    any_status = (
        model._default_manager.filter(embedding_model=model_id, image_vector__isnull=False)
        .annotate(
            moderation_distance=CosineDistance("image_vector", RawSQL("q.v", ())),
            moderation_rejected=ExpressionWrapper(
                Q(moderation_status=ModerationStatus.REJECTED), output_field=BooleanField()
            ),
        )
        .order_by("moderation_distance")
    )
    if limits is not None:
        any_status = any_status.exclude(pk__in=[obj.pk for obj in objs])
    base = any_status.exclude(moderation_status=ModerationStatus.REJECTED)

    def uploaded(later: bool, *, rejected_too: bool = False):
        sql = order % (">" if later else "<")
        if rejected_too:  # a rejected object's picture, whenever it was uploaded
            status = column(model._meta.get_field("moderation_status"))
            condition = RawSQL(f"(({sql}) OR {status} = %s)", (ModerationStatus.REJECTED.value,), BooleanField())
        else:
            condition = RawSQL(sql, (), output_field=BooleanField())
        return (any_status if rejected_too else base).filter(condition).annotate(moderation_later=Value(later))

    columns = [
        "pk",
        "image_phash",
        "moderation_distance",
        "moderation_same_owner",
        "moderation_later",
        "moderation_rejected",
        *order_fields,
        *spec.text_fields,
    ]
    count = moderation_settings.DUPLICATE_CANDIDATES
    owners = [None] * len(objs)
    if spec.owner_field:
        owner = model._meta.get_field(spec.owner_field)
        owner_type = owner.target_field.rel_db_type(connection) if owner.is_relation else owner.db_type(connection)
        # Another owner's object, or one without an owner; any object if ours has none.
        others = RawSQL(
            f"(q.owner IS NULL OR {column(owner)} IS DISTINCT FROM q.owner::{owner_type})",
            (),
            output_field=BooleanField(),
        )
        own = RawSQL(f"{column(owner)} = q.owner::{owner_type}", (), output_field=BooleanField())
        searches = [
            uploaded(False).filter(others).annotate(moderation_same_owner=Value(False)),
            uploaded(False, rejected_too=True).filter(own).annotate(moderation_same_owner=Value(True)),
            uploaded(True).filter(others).annotate(moderation_same_owner=Value(False)),
        ]
        owners = owner_keys(spec, objs)
    else:
        searches = [uploaded(later).annotate(moderation_same_owner=Value(False)) for later in (False, True)]
    parts, inner_params = [], []
    for search in searches:
        sql, params = search.values_list(*columns)[:count].query.sql_with_params()
        parts.append(f"({sql})")
        inner_params += params
    # The rows that cannot be a copy of the object's photo at its thresholds: left in
    # Python they were most of a batch's duplicate check. find_duplicate and
    # later_copies compare 1 - distance with the same float8 arithmetic; the slack only
    # keeps a row whose comparison a different rounding could tip.
    keep = " WHERE 1 - c.moderation_distance >= q.min_similarity - 1e-9" if limits is not None else ""
    sql = (
        "SELECT q.i, c.* FROM unnest(%s::halfvec[], %s::text[], %s::text[], %s::text[], %s::float8[]) "
        "WITH ORDINALITY AS q(v, pk, owner, created, min_similarity, i) "
        f"CROSS JOIN LATERAL ({' UNION ALL '.join(parts)}) AS c{keep}"
    )
    vectors = [vector_literal(vector) for vector in image_vectors]
    created_at = [str(spec.upload_order(obj)[0]) if spec.created_field else None for obj in objs]
    minimum = [None] * len(objs) if limits is None else [float(x["DUPLICATE_MIN_SIMILARITY"]) for x in limits]
    return sql, [vectors, [str(obj.pk) for obj in objs], owners, created_at, minimum, *inner_params]


def duplicate_candidates(
    spec: ModerationSpec, objs: list[Model], image_vectors, *, model_id: str, limits: list | None = None
) -> Found:
    """For each object, the photos nearest to its own: ``Found.earlier``, among objects
    uploaded before it, at most ``DUPLICATE_CANDIDATES`` of other owners (not rejected)
    and as many of its own owner (rejected ones too, and the owner's ``RejectedPhoto``s,
    marked ``rejected``: ``rejected_copy``);
    ``Found.later``, at most ``DUPLICATE_CANDIDATES`` of
    other owners uploaded after it (``later_copies``). One statement for the whole batch
    (``duplicate_query``): three index searches a photo.

    With ``limits`` (each object's ``scoring.thresholds_for``, as the task passes them),
    only candidates at least ``DUPLICATE_MIN_SIMILARITY`` similar come back, the only
    ones ``find_duplicate`` and ``later_copies`` keep, and none of ``objs`` themselves:
    their new vectors are not written yet, and ``batch_candidates`` compares them."""
    if not objs:
        return Found([], [])
    sql, params = duplicate_query(spec, objs, image_vectors, model_id=model_id, limits=limits)
    found = Found([[] for _ in objs], [[] for _ in objs])
    order_width = 2 if spec.created_field else 1
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        set_index_options(k=moderation_settings.DUPLICATE_CANDIDATES)
        cursor.execute(sql, params)
        for position, pk, phash, distance, same_owner, later, rejected, *rest in cursor.fetchall():
            order, texts = tuple(rest[:order_width]), rest[order_width:]
            (found.later if later else found.earlier)[position - 1].append(
                Candidate(pk, phash, 1.0 - float(distance), same_owner, order, spec.text_from(texts), rejected)
            )
    ordered = Found(*([nearest_first(rows, distance=lambda c: -c.similarity) for rows in lists] for lists in found))
    kept = kept_photos(spec, objs, image_vectors, model_id=model_id)
    for position, (rows, photos) in enumerate(zip(ordered.earlier, kept, strict=True)):
        least = -1.0 if limits is None else limits[position]["DUPLICATE_MIN_SIMILARITY"] - 1e-9
        rows.extend(candidate for candidate in photos if candidate.similarity >= least)
    return ordered


def owner_keys(spec: ModerationSpec, objs: list[Model]) -> list[str | None]:
    """Each object's owner as text (how the lookup's parameters and ``RejectedPhoto`` hold
    it), None for an object without one."""
    return [None if (owner := spec.owner_id_of(obj)) is None else str(owner) for obj in objs]


def kept_photos(spec: ModerationSpec, objs: list[Model], image_vectors, *, model_id: str) -> list[list[Candidate]]:
    """For each object, its owner's ``RejectedPhoto``s (photos of rejected objects that were
    deleted or changed since) as ``Candidate``s marked ``rejected``, with their cosine
    similarity to the object's photo (both vectors are unit length). One query for the
    batch, by owner; an owner has few."""
    owners = owner_keys(spec, objs)
    if not spec.owner_field or not any(owner is not None for owner in owners):
        return [[] for _ in objs]
    rows = RejectedPhoto.objects.filter(
        content_type=ContentType.objects.get_for_model(spec.model),
        owner__in={owner for owner in owners if owner is not None},
        embedding_model=model_id,
    ).values_list("owner", "object_pk", "image_phash", "image_vector")
    by_owner: dict[str, list] = {}
    for owner, pk, phash, vector in rows:
        values = vector.to_numpy() if hasattr(vector, "to_numpy") else vector  # pgvector's, or a list
        by_owner.setdefault(owner, []).append((pk, phash, np.asarray(values, dtype=np.float32)))
    return [
        [
            Candidate(pk, phash, float(np.dot(kept, vector)), True, (), "", rejected=True)
            for pk, phash, kept in by_owner.get(owner, [])
        ]
        for owner, vector in zip(owners, image_vectors, strict=True)
    ]


def later_copies(spec: ModerationSpec, objs: list[Model], later: list[list[Candidate]], phashes, *, limits: list):
    """The objects that copy a picture of ``objs`` but were scored before it: of another
    owner, uploaded after it (``later``: ``duplicate_candidates(...).later``), showing the
    same picture (``limits``: each object's ``scoring.thresholds_for``), scored (``ok``
    or ``flagged``) and not flagged as a ``duplicate_image``. A copy scored before its
    original (two workers, a second apart) found no earlier photo; it is rescanned once
    the original is written. Batch mates are left out: ``batch_candidates`` compares
    them. Returns model instances."""
    keys = {
        candidate.pk
        for rows, phash, object_limits in zip(later, phashes, limits, strict=True)
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
    same = [candidate for candidate in _same_picture(phash, candidates, limits) if not candidate.rejected]
    if not same:
        return None
    original = min(same, key=attrgetter("order"))
    if not original.same_owner:
        return FlagReason.DUPLICATE_IMAGE, original
    if same_text(text, original.text, limits["REPOST_MIN_TEXT_SIMILARITY"]):
        return FlagReason.REPOST, original
    return None


def _same_picture(phash: int | None, candidates: list[Candidate], limits: dict) -> list[Candidate]:
    return [
        candidate
        for candidate in candidates
        if candidate.similarity >= limits["DUPLICATE_MIN_SIMILARITY"]
        and same_picture(phash, candidate.phash, limits["PHASH_MAX_DISTANCE"])
    ]


def rejected_copy(phash: int | None, *, candidates: list[Candidate], limits: dict, of=None) -> Candidate | None:
    """The most similar of the owner's own objects that a moderator rejected and that show
    the same picture as this photo (``find_duplicate``'s test), or None: a rejected
    listing posted again as a new one goes to a moderator (``resubmitted``), as an edit
    of it does (``transitions.rejected_last``)."""
    same = [c for c in _same_picture(phash, candidates, limits) if c.rejected and c.same_owner and str(c.pk) != str(of)]
    return max(same, key=attrgetter("similarity"), default=None)


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
