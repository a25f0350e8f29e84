"""Database helpers of the write path: one UPDATE for many rows, and commits that need not wait."""

from __future__ import annotations

from django.db import connection, models


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
    params = [field.get_db_prep_save(getattr(row, field.attname), connection) for row in rows for field in fields]
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
