"""ClearVectors: changing the width of the vector columns on a table that holds vectors,
end to end in a database of its own (512 -> 768, as for ViT-L/14)."""

import json
import shutil
import uuid

import psycopg
import pytest

from config import embedded_postgres
from tests.fake_provider import FakeProvider
from tests.helpers import ROOT, demo_moderation_settings, run_python

pytestmark = pytest.mark.slow

SEED = """
import django, json; django.setup()
from django.core.management import call_command
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from catalog.demo import draw_photo
from catalog.models import Category, Listing
from moderation import transitions
from moderation.models import Decision
call_command("migrate", verbosity=0)
seller, moderator = User.objects.create(username="seller"), User.objects.create(username="moderator")
kitchen = Category.objects.create(name="Kitchen", slug="kitchen")
for title, colour in [("Red mug", "red"), ("Blue mug", "blue"), ("Red boots", "green")]:
    listing = Listing(seller=seller, category=kitchen, title=title, price=1)
    listing.image.save(f"{colour}.jpg", ContentFile(draw_photo(colour, "cup", seed=title)), save=False)
    listing.save()
call_command("moderation_scan", "--sync")
transitions.reject(Listing.objects.get(title="Red boots"), actor=moderator, reason="wrong photo")
print(json.dumps(Decision.objects.count()))
"""

MIGRATE_AND_REEMBED = """
import django, json; django.setup()
from django.core.management import call_command
from django.db import connection
from catalog.models import Listing
from moderation.models import Decision
call_command("check", databases=["default"])
call_command("migrate", verbosity=0)
call_command("moderation_reembed", "--sync")
with connection.cursor() as cursor:
    cursor.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                   "WHERE attrelid = 'catalog_listing'::regclass AND attname IN ('text_vector', 'image_vector')")
    types = sorted(row[0] for row in cursor.fetchall())
    cursor.execute("SELECT pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                   "WHERE i.indrelid = 'catalog_listing'::regclass AND pg_get_indexdef(i.indexrelid) LIKE '%%hnsw%%'")
    indexes = cursor.fetchall()
    cursor.execute("SELECT title, moderation_status, embedding_model, vector_dims(text_vector), "
                   "vector_dims(image_vector) FROM catalog_listing ORDER BY title")
    rows = cursor.fetchall()
print(json.dumps({"types": types, "indexes": indexes, "rows": rows, "decisions": Decision.objects.count(),
                  "rejected": list(Decision.objects.filter(to_status="rejected").values_list("reason", flat=True))}))
"""


@pytest.fixture
def project(tmp_path, demo_model_dir):
    """The demo site in a database of its own, with catalog's migrations in a copy
    that makemigrations may write to."""
    shutil.copytree(ROOT / "catalog" / "migrations", tmp_path / "width_migrations")
    (tmp_path / "width_settings.py").write_text(
        "from config.settings import *  # noqa: F403\nMIGRATION_MODULES = {'catalog': 'width_migrations'}\n"
    )
    database = f"width_{uuid.uuid4().hex[:8]}"
    env = {
        "DJANGO_SETTINGS_MODULE": "width_settings",
        "PYTHONPATH": f"{tmp_path}:{ROOT}",
        "DATABASE_URL": None,
        "EMBEDDED_PG_DATABASE": database,
        "MEDIA_ROOT": str(tmp_path / "media"),
        "MODERATION_SETTINGS": json.dumps(demo_moderation_settings(demo_model_dir)),
    }
    yield tmp_path, env
    with psycopg.connect(dbname="postgres", autocommit=True, **embedded_postgres.ensure_running()) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_changing_the_width_clears_rebuilds_and_reembeds_every_listing_and_keeps_decisions(project):
    folder, env = project
    seeded = run_python(SEED, env=env)
    assert seeded.returncode == 0, seeded.stderr
    decisions_before = json.loads(seeded.stdout.strip().splitlines()[-1])

    provider = FakeProvider(dims=768).start()
    try:
        wide = {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {"base_url": provider.url, "dimensions": 768, "model_id": "test:vit-l-14"},
            },
            "DIMENSIONS": 768,
        }
        env = {**env, "MODERATION_SETTINGS": json.dumps(wide)}
        made = run_python(
            "import django; django.setup(); from django.core.management import call_command; "
            "call_command('makemigrations', 'catalog', name='vectors_768')",
            env=env,
        )
        assert made.returncode == 0, made.stderr
        [migration] = (folder / "width_migrations").glob("*_vectors_768.py")

        # The generated migration alone cannot cast the stored vectors.
        failed = run_python(MIGRATE_AND_REEMBED, env=env)
        assert failed.returncode != 0
        assert "expected 768 dimensions, not 512" in failed.stderr

        # docs/storage.md: add ClearVectors before the AlterField operations.
        source = migration.read_text()
        source = source.replace("from django.db import", "import moderation.operations\nfrom django.db import", 1)
        source = source.replace(
            "operations = [", 'operations = [\n        moderation.operations.ClearVectors("listing"),', 1
        )
        migration.write_text(source)
        done = run_python(MIGRATE_AND_REEMBED, env=env)
        assert done.returncode == 0, done.stderr
    finally:
        provider.stop()
    assert "moderation.W004" in done.stderr  # before migrate: the migration that fixes the width is pending
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["types"] == ["halfvec(768)", "halfvec(768)"]
    assert len(result["indexes"]) == 2
    assert all(valid and "halfvec_cosine_ops" in definition for definition, valid in result["indexes"])
    assert [(title, model, dims) for title, _status, model, *dims in result["rows"]] == [
        ("Blue mug", "test:vit-l-14", [768, 768]),
        ("Red boots", "test:vit-l-14", [768, 768]),
        ("Red mug", "test:vit-l-14", [768, 768]),
    ]
    assert dict((title, status) for title, status, *_rest in result["rows"])["Red boots"] == "rejected"
    assert result["decisions"] >= decisions_before
    assert result["rejected"] == ["wrong photo"]
