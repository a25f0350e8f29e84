"""pgvector plumbing shared by the write path and search: the extension itself,
vectors as parameters, the per-query index options (in the query's own message where
the driver allows), and the order of what an index search returns.

The pipeline writes vectors and looks up duplicates with them; search reads them.
Both go through here, so neither imports the other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import psycopg.errors
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, ProgrammingError, connections, transaction
from django.db.backends.postgresql.psycopg_any import is_psycopg3

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


@functools.cache
def _literal_format(dimensions: int, number: str) -> str:
    """pgvector's text form of ``dimensions`` numbers, each as the printf format ``number``."""
    return "[" + ",".join([number] * dimensions) + "]"


def vector_literal(vector) -> str:
    """A vector (any shape of ``dimensions`` floats) as pgvector's text form, for a query
    parameter: five decimals, as ``to_db`` rounds (halfvec keeps about three significant
    digits). printf-style formatting is about 4 times faster than ``str`` of each float
    (the shortest-repr algorithm), 0.2 against 0.9 ms a query vector (docs/benchmarks.md)."""
    values = np.asarray(vector, dtype=np.float32).ravel().tolist()
    return _literal_format(len(values), "%.5f") % tuple(values)


def stored_literal(values: list[float] | None) -> str | None:
    """A vector to write (``to_db``'s list of float32 values; None stays None) as pgvector's
    text form, for a query parameter.

    Nine significant digits name each float32 exactly (IEEE 754: 9 decimal digits
    round-trip a binary32), so the column stores what pgvector's own conversion (``str`` of
    each float, the shortest-repr algorithm) makes it store, at a third of the cost: 0.10
    against 0.29 ms a 512-dimension vector (docs/benchmarks.md, "Where scoring a listing's
    time goes")."""
    if values is None:
        return None
    return _literal_format(len(values), "%.9g") % tuple(values)


def _index_options_sql(k: int) -> str:
    # ef_search is an int we compute: inlined, so the statement has no placeholder.
    return (
        f"SELECT set_config('hnsw.ef_search', '{max(moderation_settings.SEARCH_EF, 4 * int(k))}', true), "
        "set_config('hnsw.iterative_scan', 'relaxed_order', true)"
    )


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
        cursor.execute(_index_options_sql(k))


def sends_statements_together(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether queries on ``using`` go out with client-side binding over the simple query
    protocol (Django's default on psycopg 3), which runs several statements of one message
    in one implicit transaction. Not with ``OPTIONS["server_side_binding"]``."""
    connection = connections[using]
    return (
        connection.vendor == "postgresql"
        and is_psycopg3
        and not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")
    )


@contextmanager
def index_options(*, k: int, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """The HNSW options of ``set_index_options`` for every query run on ``using`` inside
    the block, in as few round trips as the driver allows.

    With client-side binding (``sends_statements_together``), each query goes out as one
    message, ``SELECT set_config(..., true); <query>``: PostgreSQL runs the statements of
    one simple-protocol message as one implicit transaction (inside the caller's own, if
    any), so the options are LOCAL to it and end with it, and a connection pooler in
    transaction mode (PgBouncer) keeps both on one server connection. One round trip
    instead of four (BEGIN, the options, the query, COMMIT). Otherwise the block runs in a
    transaction that sets the options first.
    """
    if not sends_statements_together(using):
        with transaction.atomic(using=using, savepoint=False):
            set_index_options(k=k, using=using)
            yield
        return
    options = _index_options_sql(k)

    def with_options(execute, sql, params, many, context):
        if many:
            return execute(sql, params, many, context)
        result = execute(f"{options}; {sql}", params, many, context)
        context["cursor"].cursor.nextset()  # the query's rows, after set_config's one row
        return result

    with connections[using].execute_wrapper(with_options):
        yield


def nearest_first(rows: Iterable[T], *, distance: Callable[[T], float]) -> list[T]:
    """``rows`` of an index search in order of ``distance``, nearest first, ties by key
    (``pk``): the iterative scan's relaxed order (``set_index_options``) may return rows
    slightly out of order, and rows at the same distance (the same photo uploaded twice)
    in an order that changes with ``k``."""
    return sorted(rows, key=lambda row: (distance(row), row.pk))
