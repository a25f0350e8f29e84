"""Migration operations for moderated models: changing the width of the vector columns.

PostgreSQL cannot cast a ``halfvec(512)`` to ``halfvec(768)``, so the ``AlterField``
operations that ``makemigrations`` writes after a change of
``MODERATION["DIMENSIONS"]`` fail on a table that holds vectors. ``ClearVectors``,
added before them, empties the columns first (see docs/storage.md)::

    operations = [
        ClearVectors("listing"),
        migrations.AlterField("listing", "image_vector", ...),
        migrations.AlterField("listing", "text_vector", ...),
    ]
"""

from __future__ import annotations

from django.db.migrations.operations.base import Operation

from .models import VECTOR_FIELDS


class ClearVectors(Operation):
    """Clear the vectors of a moderated model and the id of the model that made them.

    The type change that follows then rebuilds empty columns and empty HNSW indexes.
    A cleared ``embedding_model`` marks every row for ``manage.py moderation_reembed``;
    statuses and decisions are kept, and search skips a row until it is re-embedded.
    It does the same when the migration is reversed, where it must run first too: put
    a second ``ClearVectors`` after the ``AlterField`` operations for that.
    """

    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def deconstruct(self):
        return self.__class__.__qualname__, [self.model_name], {}

    def state_forwards(self, app_label, state) -> None:
        pass  # the schema does not change; the rows do

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        quote = schema_editor.quote_name
        cleared = ", ".join(f"{quote(model._meta.get_field(name).column)} = NULL" for name in VECTOR_FIELDS)
        embedding_model = quote(model._meta.get_field("embedding_model").column)
        schema_editor.execute(f"UPDATE {quote(model._meta.db_table)} SET {cleared}, {embedding_model} = ''")

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self.database_forwards(app_label, schema_editor, to_state, from_state)

    def describe(self) -> str:
        return f"Clear the vectors of {self.model_name} before their width changes"

    @property
    def migration_name_fragment(self) -> str:
        return f"clear_vectors_{self.model_name.lower()}"
