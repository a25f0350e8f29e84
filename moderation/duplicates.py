"""The duplicate check: the same picture used by another owner, the earliest upload the original.

CLIP vectors of two different photos of similar things can be very close, so a
duplicate needs both: a photo vector close to another owner's (one index search per
photo, ``duplicate_candidates``) and a perceptual hash of the pixels within a few bits
(``image_phash``). The lookup reads the database; ``find_duplicate`` only compares.
"""

from __future__ import annotations

from operator import itemgetter

import numpy as np
from django.db import connection, transaction
from django.db.models import BooleanField, Model
from django.db.models.expressions import RawSQL
from pgvector.django import CosineDistance
from PIL import Image

from .conf import moderation_settings
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
    found: list[list] = [[] for _ in objs]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        set_index_options(k=moderation_settings.DUPLICATE_CANDIDATES)
        cursor.execute(sql, params)
        for position, pk, phash, distance in cursor.fetchall():
            found[position - 1].append((pk, phash, float(distance)))
    return [
        [(pk, phash, 1.0 - distance) for pk, phash, distance in nearest_first(rows, distance=itemgetter(2))]
        for rows in found
    ]


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
