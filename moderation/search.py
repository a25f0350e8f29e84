"""Similar-item search on pgvector: by object, by text, by photo, and hybrid.

Each function takes a moderated model, or a queryset of one (``source``), so a caller
can add ``select_related`` or its own conditions.

Every query runs on one model's rows whose vectors were made by the configured
embedder (vectors of two models are never compared), through the HNSW index. With
each query, ``vectors.index_options`` raises ``hnsw.ef_search`` with ``k`` and switches
pgvector's iterative index scan on, LOCAL to the query's transaction and sent in the
query's own message (one round trip), so that a filtered search still returns ``k``
results instead of the few that survived the filter among the first candidates.

Scores of different modalities are not comparable (a text-to-photo cosine of 0.3 is
a strong match, a photo-to-photo cosine of 0.3 a weak one), so hybrid and
"more like this" results are fused by rank with reciprocal rank fusion, not by
adding cosines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np
from django.db import models
from django.db.models import Q, Subquery, Value
from pgvector.django import CosineDistance

from . import statements
from .conf import moderation_settings
from .embedders import decode_listing_image, get_embedder
from .models import PUBLIC_STATUSES, VECTOR_FIELDS
from .registry import get_spec
from .vectors import index_options, nearest_first, vector_literal

MAX_K = 100
RRF_K = 60  # the usual constant of reciprocal rank fusion


@dataclass
class Hit:
    object: models.Model
    score: float  # cosine similarity for one modality; fused rank score for several
    ranks: dict[str, int] = field(default_factory=dict)


def _source_queryset(source) -> models.QuerySet:
    """``source``, a moderated model or a queryset of one, as a queryset (the model's default manager's)."""
    return source if isinstance(source, models.QuerySet) else source._default_manager.all()


def _queryset(source, *, filters: dict | None, statuses, exclude_pk=None):
    """``source`` is a moderated model, or a queryset of one (to add ``select_related``,
    a manager's own filters, ...); the rows are read from ``SEARCH_DATABASE``.

    Every condition goes into one ``filter()``: each queryset method clones the query,
    and building the query is a good part of a search's own cost (docs/benchmarks.md).
    The app's conditions are on the model's own columns, so joining them with the
    caller's ``filters`` in one call changes no join of a multi-valued relation."""
    queryset = _source_queryset(source)
    get_spec(queryset.model)  # a clear error for a model that is not moderated
    conditions = Q(embedding_model=get_embedder().model_id)
    if statuses is not None:
        conditions &= Q(moderation_status__in=list(statuses))
    if exclude_pk is not None:
        conditions &= ~Q(pk=exclude_pk)
    return queryset.using(moderation_settings.SEARCH_DATABASE).filter(conditions, **(filters or {}))


def capped(k: int) -> int:
    """``k`` within 1..``MAX_K``."""
    return max(1, min(int(k), MAX_K))


def nearest_queryset(queryset, column: str, vector: np.ndarray, *, k: int):
    """The query of ``nearest``: ORDER BY the cosine distance, LIMIT k (the HNSW index's shape).
    Annotations are prefixed: a host model may well have a field named "distance"."""
    return _nearest_queryset(queryset, column, vector_literal(vector), k=k)


def _nearest_queryset(queryset, column: str, literal: str, *, k: int):
    # The vectors themselves are not fetched: parsing 2 x 512 floats a row costs more
    # than the index search.
    return (
        queryset.filter(**{f"{column}__isnull": False})
        .defer(*VECTOR_FIELDS)
        .annotate(moderation_distance=CosineDistance(column, Value(literal)))
        .order_by("moderation_distance")[: capped(k)]
    )


def nearest(queryset, column: str, vector: np.ndarray, *, k: int) -> list[Hit]:
    """The ``k`` rows of ``queryset`` nearest to ``vector`` in ``column`` (cosine), nearest
    first; one query (a ``select_related`` of ``queryset`` joins, it adds none).

    The statement is compiled once per thread for each queryset, column and k, and run
    again with each query vector (``statements``)."""
    db = queryset.db  # asked once: a router may answer differently each time
    queryset = queryset.using(db)
    return _nearest(("nearest", queryset), lambda: queryset, using=db, column=column, vector=vector, k=k)


def _nearest_in(source, column: str, vector: np.ndarray, *, k: int, filters: dict | None, statuses) -> list[Hit]:
    """``nearest`` over ``_queryset(source, ...)``, which is built only for a search whose
    statement this thread has not compiled yet."""
    using = moderation_settings.SEARCH_DATABASE
    # Everything _queryset reads besides its arguments is part of the shape; a model's
    # default manager may filter by the request's state (a tenant, a site): its queryset
    # of now, not the model, stands in the shape.
    source = _source_queryset(source)
    return _nearest(
        ("nearest in", source, filters, statuses, get_embedder().model_id, using),
        lambda: _queryset(source, filters=filters, statuses=statuses),
        using=using,
        column=column,
        vector=vector,
        k=k,
    )


def _nearest(shape: tuple, queryset_of, *, using: str, column: str, vector: np.ndarray, k: int) -> list[Hit]:
    """The search of ``nearest``: ``queryset_of()`` (called only to compile) ordered by the
    distance to ``vector``, its statement keyed by ``shape`` (everything the queryset
    depends on), the column and k."""
    k = capped(k)
    with index_options(k=k, using=using):
        rows = statements.fetch(
            (*shape, column, k),
            lambda literal: _nearest_queryset(queryset_of(), column, literal, k=k),
            vector_literal(vector),
        )
    return _hits(rows)


def _hits(rows) -> list[Hit]:
    """Rows annotated with ``moderation_distance``, nearest first, as ``Hit``s (similarity = 1 - distance)."""
    return [
        Hit(row, 1.0 - float(row.moderation_distance))
        for row in nearest_first(rows, distance=attrgetter("moderation_distance"))
    ]


def fuse(lists: dict[str, list[Hit]], *, weights: dict[str, float], k: int) -> list[Hit]:
    """Reciprocal rank fusion: each list adds weight / (60 + rank) to an object's score."""
    fused: dict = {}
    for name, hits in lists.items():
        for rank, hit in enumerate(hits, start=1):
            entry = fused.setdefault(hit.object.pk, Hit(hit.object, 0.0))
            entry.score += weights.get(name, 1.0) / (RRF_K + rank)
            entry.ranks[name] = rank
    return sorted(fused.values(), key=lambda hit: -hit.score)[:k]


def similar_to(
    obj: models.Model, *, k: int = 10, filters: dict | None = None, statuses=PUBLIC_STATUSES, source=None
) -> list[Hit]:
    """More like this: photo-to-photo and text-to-text neighbours of ``obj``, fused by rank.

    Two statements, one index search each, and the object's vectors never leave the
    database: each search orders by the distance to the object's own stored vector, read
    by a subquery. ``obj`` may be loaded without its vectors. Each statement is compiled
    once per thread and run again with each object's key (``statements``).
    """
    model_id = get_embedder().model_id
    if obj.embedding_model != model_id:
        return []  # not scored yet, or by another model: nothing comparable
    source = _source_queryset(type(obj) if source is None else source)
    own = source.model._default_manager.all()  # the subquery reads the object's vector through it
    k = capped(k)
    using = moderation_settings.SEARCH_DATABASE
    lists = {}
    with index_options(k=k, using=using):
        for column, kind in (("image_vector", "image"), ("text_vector", "text")):
            rows = statements.fetch(
                ("similar", source, own, filters, statuses, model_id, using, column, k),
                lambda pk, column=column: _similar_queryset(
                    source, pk, column, k=k, filters=filters, statuses=statuses
                ),
                source.model._meta.pk.to_python(obj.pk),  # as the ORM would send it
            )
            lists[kind] = _hits(rows)
    return fuse(lists, weights={"image": 1.0, "text": 1.0}, k=k)


def _similar_queryset(source, pk, column: str, *, k: int, filters: dict | None, statuses):
    """The ``k`` objects nearest to the object ``pk`` in ``column``, the object's own stored
    vector read by a subquery, ordered by the cosine distance (the HNSW index's shape)."""
    queryset = _queryset(source, filters=filters, statuses=statuses, exclude_pk=pk)
    own = queryset.model._default_manager.filter(pk=pk).order_by()
    return (
        queryset.filter(**{f"{column}__isnull": False})
        .defer(*VECTOR_FIELDS)
        .annotate(moderation_distance=CosineDistance(column, Subquery(own.values(column)[:1])))
        .order_by("moderation_distance")[:k]
    )


def by_text(source, text: str, *, k: int = 10, filters: dict | None = None, statuses=PUBLIC_STATUSES) -> list[Hit]:
    """Photos that show what ``text`` says (cross-modal: the text vector against photo vectors)."""
    vector = get_embedder().embed_texts([text])[0]
    return _nearest_in(source, "image_vector", vector, k=k, filters=filters, statuses=statuses)


def by_image(source, image: bytes, *, k: int = 10, filters: dict | None = None, statuses=PUBLIC_STATUSES) -> list[Hit]:
    """Reverse image search: photos like an uploaded one."""
    embedder = get_embedder()
    vector = embedder.embed_images([decode_listing_image(image, embedder=embedder)])[0]
    return _nearest_in(source, "image_vector", vector, k=k, filters=filters, statuses=statuses)


def hybrid(
    source,
    *,
    text: str,
    image: bytes,
    image_weight: float = 0.5,
    k: int = 10,
    filters: dict | None = None,
    statuses=PUBLIC_STATUSES,
) -> list[Hit]:
    """Text and photo together, fused by rank; ``image_weight`` in [0, 1] favours the photo."""
    embedder = get_embedder()
    text_vector, image_vector = embedder.embed(texts=[text], images=[decode_listing_image(image, embedder=embedder)])
    lists = {
        name: _nearest_in(source, "image_vector", vector[0], k=k, filters=filters, statuses=statuses)
        for name, vector in (("text", text_vector), ("image", image_vector))
    }
    return fuse(lists, weights={"text": 1.0 - image_weight, "image": image_weight}, k=k)
