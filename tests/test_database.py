"""The database is a real PostgreSQL with pgvector, migrated."""

import numpy as np
import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_migrations_create_the_vector_extension():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    assert tuple(int(part) for part in version.split(".")[:2]) >= (0, 8)


def test_no_migration_is_missing():
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_a_512_dimension_cosine_distance_in_the_database_is_right():
    """Guards against embedded builds that crash on CPUs without AVX-512."""
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(512), rng.standard_normal(512)
    expected = 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    literal = "[" + ",".join(f"{x:.8f}" for x in a) + "]", "[" + ",".join(f"{x:.8f}" for x in b) + "]"
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::vector(512) <=> %s::vector(512)", literal)
        (vector_distance,) = cursor.fetchone()
        cursor.execute("SELECT %s::halfvec(512) <=> %s::halfvec(512)", literal)
        (halfvec_distance,) = cursor.fetchone()
    assert vector_distance == pytest.approx(expected, abs=1e-6)
    assert halfvec_distance == pytest.approx(expected, abs=2e-3)
