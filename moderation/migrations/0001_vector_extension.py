from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    """Creates pgvector's `vector` extension before any model stores a vector.

    On a managed PostgreSQL where the migration role may not create extensions,
    run `CREATE EXTENSION vector;` once as an administrator; this is then a no-op.
    """

    initial = True
    dependencies = []
    operations = [VectorExtension()]
