"""Database helpers of the write path: one UPDATE for many rows, and commits that need not wait."""

from __future__ import annotations

import functools

from django.db import connection, models
from pgvector.django import HalfVectorField, VectorField

from .vectors import stored_literal


def update_rows(model: type[models.Model], rows: list[models.Model], field_names: list[str]) -> None:
    """Write ``field_names`` of ``rows`` in one UPDATE ... FROM (VALUES ...).

    What ``bulk_update`` does, without its CASE WHEN per column and row: for a batch
    of 50 scored rows, building and running those took longer than everything else
    a batch task does (docs/benchmarks.md).
    """
    if not rows:
        return
    fields = [model._meta.pk, *(model._meta.get_field(name) for name in field_names)]
    quote = connection.ops.quote_name
    cells = ", ".join(f"%s::{field.db_type(connection)}" for field in fields)
    columns = ", ".join(quote(field.column) for field in fields)
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    sql = (
        f"UPDATE {table} SET "
        + ", ".join(f"{quote(field.column)} = v.{quote(field.column)}" for field in fields[1:])
        + f" FROM (VALUES {', '.join(f'({cells})' for _ in rows)}) AS v({columns}) WHERE {table}.{pk} = v.{pk}"
    )
    # Vectors as exact literals (``vectors.stored_literal``): pgvector's own conversion
    # was a tenth of a batch's time.
    prepare = [
        stored_literal
        if isinstance(field, (HalfVectorField, VectorField))
        else functools.partial(field.get_db_prep_save, connection=connection)
        for field in fields
    ]
    params = [
        to_param(getattr(row, field.attname)) for row in rows for field, to_param in zip(fields, prepare, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def relax_commit() -> None:
    """Inside a transaction of scores: commit without waiting for the WAL flush.

    Scores can always be computed again. If the database crashes within the last few
    hundred milliseconds, a committed result may be lost; the object is then still
    ``pending`` and the sweeper scores it again. Moderators' decisions never use this.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
