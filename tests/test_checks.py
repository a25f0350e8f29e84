"""System checks: misconfiguration is a warning or an error with an id, a hint and obj=."""

import json
import uuid

import pytest
from django.core.checks import run_checks
from django.core.checks.registry import registry as check_registry
from django.db import connection, models
from django.test.utils import isolate_apps

from moderation import checks, registry
from moderation.checks import check_image_fields, check_vector_columns, check_vector_migrations
from moderation.embedders import get_embedder
from moderation.models import ModeratedModel
from moderation.uploads import ModeratedImageField
from tests.helpers import ROOT, run_python
from tests.testapp.models import Gadget


def test_the_demo_and_test_models_store_photos_under_the_upload_rules():
    assert check_image_fields() == []


@isolate_apps("tests.testapp")
def test_a_registered_model_with_a_plain_image_field_gets_a_warning(monkeypatch):
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))

    @registry.register(text_fields=["name"], image_field="photo")
    class Poster(ModeratedModel):
        name = models.CharField(max_length=50)
        photo = models.ImageField()

        class Meta(ModeratedModel.Meta):
            app_label = "testapp"

    [warning] = check_image_fields()
    assert warning.id == "moderation.W003"
    assert warning.obj is Poster._meta.get_field("photo")
    assert "ModeratedImageField" in warning.hint
    assert "moderation_sanitize_images" in warning.hint


WIDE = {
    "EMBEDDER": {
        "BACKEND": "moderation.embedders.http.HttpEmbedder",
        "OPTIONS": {"base_url": "http://127.0.0.1:9", "dimensions": 768},
    },
    "DIMENSIONS": 768,
}


def run_manage(*args: str, settings: dict):
    """``manage.py *args`` in a fresh process with ``MODERATION = settings``; with its system
    checks, which ``call_command`` skips."""
    code = "import sys; from django.core.management import execute_from_command_line as run; run(sys.argv)"
    return run_python(code, args=list(args), env={"MODERATION_SETTINGS": json.dumps(settings)})


def test_a_new_dimensions_setting_without_its_migration_is_a_warning_naming_the_widths():
    """Issue #10, fault 13: DIMENSIONS and an embedder of 768, no new migration."""
    result = run_manage("check", settings=WIDE)
    assert result.returncode == 0
    assert "moderation.W005" in result.stderr
    assert "catalog.Listing.text_vector is halfvec(768) (MODERATION['DIMENSIONS'])" in result.stderr
    assert "but its migrations make it halfvec(512)" in result.stderr


def test_makemigrations_runs_while_the_vector_fields_differ_from_their_migrations():
    """Issue #10 follow-up, fault 2: docs/storage.md's "Changing the width", step 2, is the
    command the check's hint names; an error would stop it."""
    result = run_manage("makemigrations", "catalog", "--dry-run", settings=WIDE)
    assert result.returncode == 0, result.stderr
    assert "Alter field text_vector on listing" in result.stdout
    assert "Alter field image_vector on listing" in result.stdout


def test_the_migrations_check_passes_when_the_fields_match_the_migrations(demo_moderation):
    assert check_vector_migrations() == []


@pytest.mark.django_db
def test_a_column_in_the_database_narrower_or_wider_than_the_embedder_is_an_error(demo_moderation):
    """The migrations agree with the model, but the database does not (altered by hand,
    or a migration faked): no migration will fix it."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE testapp_gadget ALTER COLUMN image_vector TYPE halfvec(768)")
    found = check_vector_columns(databases=["default"])
    assert [(m.id, m.obj) for m in found] == [("moderation.E004", Gadget)]
    assert "testapp_gadget.image_vector in the database 'default' is halfvec(768)" in found[0].msg
    assert "makes 512-dimension vectors" in found[0].msg


@pytest.mark.django_db
def test_the_database_check_is_quiet_when_the_columns_fit_the_embedder(demo_moderation):
    assert check_vector_columns(databases=["default"]) == []
    assert check_vector_columns(databases=None) == []  # `check` without --database


@pytest.fixture
def hosted(settings):
    """MODERATION on the HTTP embedder (no call is made: checks only read its options)."""

    def configure(*, timeout: int, **options):
        settings.MODERATION = {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {"base_url": "http://127.0.0.1:9", "dimensions": 512, **options},
            },
            "BATCH_SIZE": 16,
        }
        settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": timeout, "retry": timeout + 60}

    return configure


def test_a_task_that_may_wait_on_the_embedder_past_the_queue_timeout_is_an_error(hosted):
    # 16 objects in one call, then the prompts: 2 calls x (3 attempts x 10 s + 2 waits of 8 s) = 92 s.
    hosted(timeout=60, deadline_seconds=10, max_retries=2, max_wait=8, backoff_max=4)
    (error,) = checks.check_embedder_deadline()
    assert error.id == "moderation.E005"
    assert "92 s" in error.msg
    assert "Q_CLUSTER['timeout'] = 60" in error.msg
    assert "deadline_seconds" in error.hint
    assert error.obj is get_embedder()


def test_a_call_that_may_end_under_the_queue_timeout_but_past_the_tasks_budget_is_an_error(hosted):
    """Issue #10 follow-up, fault 1: a task starts an embedder call only within 90% of the
    timeout, so a call of BATCH_SIZE objects must fit that: 2 calls x 55 s = 110 s < 120 s."""
    hosted(timeout=120, deadline_seconds=55, max_retries=0)
    (error,) = checks.check_embedder_deadline()
    assert error.id == "moderation.E005"
    assert "may wait 110 s" in error.msg
    assert "a task's budget of 108 s (90% of Q_CLUSTER['timeout'] = 120 s)" in error.msg


def test_an_embedder_whose_worst_case_fits_the_queue_timeout_passes(hosted):
    hosted(timeout=120)  # the HTTP embedder's defaults: 100 s
    assert checks.check_embedder_deadline() == []


@isolate_apps("tests.testapp")
def test_a_registered_model_whose_own_manager_drops_the_moderation_queries_is_an_error(monkeypatch):
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))

    @registry.register(text_fields=["name"], image_field="photo")
    class Flyer(ModeratedModel):
        name = models.CharField(max_length=50)
        photo = ModeratedImageField()
        objects = models.Manager()

        class Meta(ModeratedModel.Meta):
            app_label = "testapp"

    [error] = checks.check_managers()
    assert (error.id, error.obj) == ("moderation.E006", Flyer)
    assert "ModeratedQuerySet" in error.hint


def test_a_manager_built_on_the_moderated_queryset_passes():
    assert checks.check_managers() == []


def test_an_embedder_that_cannot_be_built_is_a_warning_so_migrate_still_runs(settings):
    settings.MODERATION = {"EMBEDDER": {"BACKEND": "moderation.embedders.nowhere.Embedder"}}
    [warning] = checks.check_embedder()
    assert warning.id == "moderation.W001"
    assert "MODERATION['EMBEDDER']['BACKEND']" in warning.msg


def test_an_embedder_wider_than_the_dimensions_setting_is_an_error(settings):
    settings.MODERATION = {"EMBEDDER": WIDE["EMBEDDER"]}  # 768 against the default 512
    [error] = checks.check_embedder()
    assert error.id == "moderation.E001"
    assert "MODERATION['DIMENSIONS'] = 512" in error.msg


def test_the_demo_model_is_deployment_advice(demo_moderation):
    [warning] = checks.check_demo_model()
    assert warning.id == "moderation.W002"
    ids = {message.id for message in run_checks(tags=[checks.TAG])}
    assert "moderation.W002" not in ids
    assert "moderation.W002" in {m.id for m in run_checks(tags=[checks.TAG], include_deployment_checks=True)}


def test_a_queue_that_would_deliver_a_running_task_twice_is_an_error(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 120, "retry": 120}
    [error] = checks.check_queue()
    assert error.id == "moderation.E002"
    assert "retry larger than timeout" in error.hint


@pytest.mark.django_db
def test_a_column_that_an_unapplied_migration_brings_to_the_embedders_width_is_a_warning(demo_moderation):
    """The database is behind its migration files: `migrate` will fix it, so it must still run."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE testapp_gadget ALTER COLUMN text_vector TYPE halfvec(768)")
        cursor.execute("DELETE FROM django_migrations WHERE app = 'testapp' AND name = '0003_moderation_started_at'")
    found = check_vector_columns(databases=["default"])
    assert [(m.id, m.obj, m.hint) for m in found] == [("moderation.W004", Gadget, "Run migrate.")]


def test_every_check_is_tagged_moderation_and_the_model_and_database_ones_with_djangos_tags():
    ours = {
        check.__name__: check.tags
        for check in check_registry.registered_checks | check_registry.deployment_checks
        if check.__module__ == "moderation.checks"
    }
    assert len(ours) == 14
    assert all(checks.TAG in tags for tags in ours.values())
    assert {
        "check_image_fields",
        "check_managers",
        "check_vector_migrations",
        "check_registrations",
        "check_upload_order",
        "check_vector_indexes",
    } <= {name for name, tags in ours.items() if "models" in tags}
    assert "database" in ours["check_vector_columns"]
    assert "database" in ours["check_vector_extension"]
    assert check_registry.deployment_checks & {checks.check_demo_model}


@isolate_apps("tests.testapp")
def test_a_registration_naming_fields_the_model_lacks_is_an_error_per_field_not_an_import_error(monkeypatch):
    monkeypatch.setattr(registry, "_refused", {})

    @registry.register(text_fields=["name", "blurb"], image_field="photo", owner_field="seller")
    class Poster(ModeratedModel):
        name = models.CharField(max_length=50)
        photo = ModeratedImageField()

        class Meta(ModeratedModel.Meta):
            app_label = "testapp"

    found = checks.check_registrations()
    assert [(error.id, error.obj) for error in found] == [("moderation.E007", Poster)] * 2
    assert "Poster has no field 'blurb' (register(..., text_fields=...))." in found[0].msg
    assert "'seller' (register(..., owner_field=...))" in found[1].msg
    assert not registry.is_registered(Poster)


@isolate_apps("tests.testapp")
def test_registering_a_model_that_is_no_moderated_model_is_an_error(monkeypatch):
    monkeypatch.setattr(registry, "_refused", {})

    @registry.register(text_fields=["name"], image_field="photo")
    class Plain(models.Model):  # noqa: DJ008
        name = models.CharField(max_length=50)
        photo = models.ImageField()

        class Meta:
            app_label = "testapp"

    [error] = checks.check_registrations()
    assert error.id == "moderation.E007"
    assert "must inherit moderation.models.ModeratedModel" in error.msg


def manage(*args: str, settings: str, path):
    """``manage.py *args`` in a fresh interpreter with the settings module ``settings`` in ``path``."""
    code = (
        "import sys; from django.core.management import execute_from_command_line; execute_from_command_line(sys.argv)"
    )
    return run_python(code, args=list(args), env={"DJANGO_SETTINGS_MODULE": settings, "PYTHONPATH": f"{path}:{ROOT}"})


def test_check_shows_every_registration_error_at_once_instead_of_a_traceback(tmp_path):
    """register() raised ImproperlyConfigured while the models were imported: one error, a traceback."""
    app = tmp_path / "posters"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "models.py").write_text(
        "from django.db import models\n"
        "from moderation.models import ModeratedModel\n"
        "from moderation.registry import register\n\n\n"
        "@register(text_fields=['title'], image_field='photo', category_field='kind')\n"
        "class Poster(ModeratedModel):\n"
        "    name = models.CharField(max_length=50)\n"
    )
    (tmp_path / "poster_settings.py").write_text(
        "from tests.settings import *  # noqa\nINSTALLED_APPS = [*INSTALLED_APPS, 'posters']\n"
    )
    result = manage("check", settings="poster_settings", path=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("moderation.E007") == 3, result.stderr


def test_a_database_that_is_not_postgresql_is_an_error_and_migrate_stops_before_doing_anything(tmp_path):
    """Issue #12: on SQLite, `migrate` died with a raw `near "[]": syntax error` after marking a
    migration applied."""
    database = tmp_path / "db.sqlite3"
    (tmp_path / "sqlite_settings.py").write_text(
        "from tests.settings import *  # noqa\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', 'NAME': {str(database)!r}}}}}\n"
    )
    for command in ("check", "migrate"):
        result = manage(command, settings="sqlite_settings", path=tmp_path)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr, result.stderr
        assert "moderation.E008" in result.stderr, result.stderr
        assert "The database 'default' is SQLite (django.db.backends.sqlite3)" in result.stderr
        assert "moderation.Decision, catalog.Listing, testapp.Gadget" in result.stderr
        assert "near" not in result.stderr
    assert not database.exists() or sqlite_tables(database) == []


def sqlite_tables(path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


@pytest.mark.django_db
def test_the_database_check_passes_with_pgvector_0_8_and_names_the_version_it_needs(monkeypatch):
    assert checks.check_vector_extension(databases=["default"]) == []
    monkeypatch.setattr(checks, "MIN_VECTOR_VERSION", (99, 0))
    [error] = checks.check_vector_extension(databases=["default"])
    assert error.id == "moderation.E009"
    assert "has pgvector 0.8" in error.msg
    assert "moderation needs 99.0 or later" in error.msg
    assert "Install pgvector 99.0 or later on the server" in error.hint


@isolate_apps("tests.testapp")
def test_a_model_keyed_by_uuids_that_names_no_created_field_gets_a_warning(monkeypatch):
    """Issue #12 follow-up, finding 1: the README's Ad (a UUID key, no created_field) took
    the smaller key for the original of a reused photo and flagged the earlier upload."""
    monkeypatch.setattr(registry, "_registry", {})

    @registry.register(text_fields=["title"], image_field="photo")
    class Ad(ModeratedModel):
        reference = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
        title = models.CharField(max_length=200)
        photo = ModeratedImageField(upload_to="ads/")

        class Meta(ModeratedModel.Meta):
            app_label = "testapp"

    @registry.register(text_fields=["title"], image_field="photo", created_field="created_at")
    class DatedAd(ModeratedModel):
        reference = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
        title = models.CharField(max_length=200)
        photo = ModeratedImageField(upload_to="ads/")
        created_at = models.DateTimeField(auto_now_add=True)

        class Meta(ModeratedModel.Meta):
            app_label = "testapp"

    @registry.register(text_fields=["title"], image_field="photo")
    class NumberedAd(ModeratedModel):
        title = models.CharField(max_length=200)
        photo = ModeratedImageField(upload_to="ads/")

        class Meta(ModeratedModel.Meta):
            app_label = "testapp"

    [warning] = checks.check_upload_order()
    assert (warning.id, warning.obj) == ("moderation.W006", Ad)
    assert "testapp.Ad is keyed by a UUIDField" in warning.msg
    assert "created_field='created_at'" in warning.hint


@isolate_apps("tests.testapp")
def test_a_model_whose_meta_does_not_inherit_the_moderated_meta_gets_a_warning_per_missing_hnsw_index(monkeypatch):
    """Issue #12 follow-up, finding 7: a plain ``class Meta`` dropped both HNSW indexes silently."""
    monkeypatch.setattr(registry, "_registry", {})

    @registry.register(text_fields=["title"], image_field="photo")
    class Ad(ModeratedModel):
        title = models.CharField(max_length=200)
        photo = ModeratedImageField(upload_to="ads/")

        class Meta:
            app_label = "testapp"
            ordering = ["title"]

    found = checks.check_vector_indexes()
    assert [(warning.id, warning.obj) for warning in found] == [("moderation.W007", Ad)] * 2
    assert "testapp.Ad.text_vector has no HNSW index" in found[0].msg
    assert "testapp.Ad.image_vector has no HNSW index" in found[1].msg
    assert "class Meta(ModeratedModel.Meta)" in found[0].hint


def test_the_demo_and_test_models_keep_their_hnsw_indexes():
    assert checks.check_vector_indexes() == []


@pytest.mark.parametrize("media_url", ["", "/"])
def test_a_media_url_that_gives_photos_no_url_of_their_own_is_a_warning(settings, media_url):
    """Issue #12 follow-up, finding 4: a new startproject sets no MEDIA_URL; every photo's
    and thumbnail's URL was a 404."""
    settings.MEDIA_URL = media_url
    [warning] = checks.check_media_url()
    assert warning.id == "moderation.W008"
    assert "MEDIA_URL is '/'" in warning.msg  # Django reads an empty MEDIA_URL as the script's prefix
    assert "static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)" in warning.hint


def test_a_media_url_of_its_own_passes(settings):
    settings.MEDIA_URL = "media/"
    assert checks.check_media_url() == []


def test_building_the_demo_model_does_not_warn_that_its_folder_is_missing(tmp_path):
    """Issue #12 follow-up, finding 8: the command printed W001 ("model folder lacks
    config.json") about the folder it was writing."""
    folder = tmp_path / "colour-words"
    settings = {
        "EMBEDDER": {
            "BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder",
            "OPTIONS": {"model_dir": str(folder)},
        }
    }
    result = run_manage("moderation_demo_model", str(folder), settings=settings)
    assert result.returncode == 0, result.stderr
    assert "moderation.W001" not in result.stderr
    assert "System check" not in result.stderr
    assert (folder / "config.json").exists()
