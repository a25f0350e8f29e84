"""The database is a real PostgreSQL with pgvector, migrated."""

import uuid

import numpy as np
import psycopg
import pytest
from django.db import connection
from psycopg import sql

from tests.helpers import run_python

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


@pytest.fixture
def scratch_database():
    """The name of a new, empty database on the same server (dropped after)."""
    name = f"moderation_scratch_{uuid.uuid4().hex[:8]}"
    params = {k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "password")}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(
            "DO $$ BEGIN CREATE ROLE moderation_no_superuser LOGIN; EXCEPTION WHEN duplicate_object THEN END $$"
        )
    yield name
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute("DROP ROLE moderation_no_superuser")


PRE_MIGRATE = """
import django
django.setup()
from django.apps import apps
from django.db import connection
from django.db.models.signals import pre_migrate

connection.settings_dict["USER"] = {user!r}
try:
    pre_migrate.send(apps.get_app_config("moderation"), app_config=None, verbosity=0, interactive=False,
                     using="default", apps=apps, plan=[])
finally:
    connection.settings_dict["USER"] = ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension")
        print([name for (name,) in cursor.fetchall()])
"""


def test_before_any_app_migrates_the_vector_extension_is_created(scratch_database):
    """Issue #12: a host app labelled before moderation (`ads`) failed `migrate` on a fresh
    database with `type "halfvec" does not exist`: its migration did not depend on moderation's."""
    result = run_python(PRE_MIGRATE.format(user=""), env={"EMBEDDED_PG_DATABASE": scratch_database})
    assert result.returncode == 0, result.stderr
    assert "vector" in result.stdout


def test_a_role_that_may_not_create_the_extension_is_told_which_statement_to_run(scratch_database):
    code = PRE_MIGRATE.format(user="moderation_no_superuser")
    result = run_python(code, env={"EMBEDDED_PG_DATABASE": scratch_database})
    assert "CommandError: The role 'moderation_no_superuser' may not create the pgvector extension" in result.stderr
    assert "Run `CREATE EXTENSION vector;` once in that database as a superuser" in result.stderr
    assert "vector" not in result.stdout
