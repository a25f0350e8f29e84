"""pgvector plumbing shared by the write path and search: the extension itself,
vectors as parameters, the per-query index options, and the order of what an index
search returns.

The pipeline writes vectors and looks up duplicates with them; search reads them.
Both go through here, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np
import psycopg.errors
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, ProgrammingError, connections

from .conf import moderation_settings

# What the app needs of pgvector: halfvec (0.7) and iterative index scans (0.8).
MIN_VECTOR_VERSION = (0, 8)

T = TypeVar("T")


def create_vector_extension(*, using: str = "default", **kwargs) -> None:
    """``pre_migrate`` receiver: ``CREATE EXTENSION IF NOT EXISTS vector`` on a PostgreSQL
    database before any migration runs.

    A host's own migrations do not depend on moderation's (``makemigrations`` does not add
    it), and their order is the apps' labels': the table of an app named ``ads`` would be
    created before the extension, and fail with ``type "halfvec" does not exist``.
    Raises CommandError, naming the statement to run, when the role may not create it.
    """
    database = connections[using]
    if database.vendor != "postgresql":
        return  # system check moderation.E008 stops migrate first
    with database.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        if cursor.fetchone():
            return
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except ProgrammingError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
                raise
            raise CommandError(
                f"The role {database.settings_dict.get('USER') or '(default)'!r} may not create the pgvector "
                f"extension in the database {using!r}. Run `CREATE EXTENSION vector;` once in that database as a "
                "superuser (on a managed service, as the administrator role it gives you), then run migrate again."
            ) from None


def to_db(vector) -> list[float]:
    """A vector as the list pgvector's field writes fastest, rounded to what halfvec keeps."""
    return np.asarray(vector, dtype=np.float32).round(5).tolist()


def vector_literal(vector) -> str:
    """A vector as pgvector's text form, for a query parameter."""
    return "[" + ",".join(map(str, to_db(vector))) + "]"


def set_index_options(*, k: int, using: str = DEFAULT_DB_ALIAS) -> None:
    """Per-query HNSW options for a search of ``k`` neighbours on the database ``using``;
    call inside the query's transaction there (they are SET LOCAL).

    The candidate list (``hnsw.ef_search``) is max(``SEARCH_EF``, 4 x k), and pgvector's
    iterative index scan is on, so that a filtered search still finds ``k`` rows. Its
    ``relaxed_order`` mode may return neighbours slightly out of order: sort the rows
    with ``nearest_first``.
    """
    with connections[using].cursor() as cursor:
        # set_config(..., true) is SET LOCAL; both in one round trip.
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)",
            [str(max(moderation_settings.SEARCH_EF, 4 * int(k)))],
        )


def nearest_first(rows: Iterable[T], *, distance: Callable[[T], float]) -> list[T]:
    """``rows`` of an index search in order of ``distance``, nearest first: the iterative
    scan's relaxed order (``set_index_options``) may return them slightly out of order."""
    return sorted(rows, key=distance)
