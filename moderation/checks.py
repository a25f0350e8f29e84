"""System checks for settings that would make moderation silently wrong.

Every check is tagged ``moderation`` (``manage.py check --tag moderation``), with
Django's own tag where one fits: ``models`` for the moderated models' fields and
managers, ``database`` for the columns in the database (``check --database``).
The demo model's warning is deployment advice (``check --deploy``).
"""

from django.conf import settings
from django.core import checks
from django.db import connections, router
from django.db.migrations.loader import MigrationLoader
from django.db.models.fields import AutoFieldMixin
from pgvector.django import HnswIndex

from .conf import moderation_settings
from .embedders import EmbedderError, get_embedder
from .models import VECTOR_FIELDS, Decision, ModeratedQuerySet, vector_dimensions
from .registry import refused, specs
from .tasks import TIMEOUT_SHARE, task_budget_seconds
from .uploads import ModeratedImageField
from .vectors import MIN_VECTOR_VERSION

TAG = "moderation"
WIDTH_HINT = 'Change the width as docs/storage.md ("Changing the width") says: a migration that clears the vectors.'


@checks.register(TAG)
def check_embedder(app_configs=None, **kwargs):
    """The embedder can be built, and makes vectors as wide as the columns."""
    try:
        embedder = get_embedder()
    except EmbedderError as exc:
        # A warning, not an error: `migrate` must still run on a machine without the model.
        return [
            checks.Warning(
                f"The embedder cannot be built: {exc}",
                id="moderation.W001",
                hint="Objects stay pending until MODERATION['EMBEDDER'] is fixed.",
            )
        ]
    if embedder.dimensions != moderation_settings.DIMENSIONS:
        return [
            checks.Error(
                f"The embedder {embedder.model_id} makes {embedder.dimensions}-dimension vectors, but the vector "
                f"columns have MODERATION['DIMENSIONS'] = {moderation_settings.DIMENSIONS}.",
                hint="Set MODERATION['DIMENSIONS'] to the embedder's width and make a migration, "
                "or choose another model.",
                id="moderation.E001",
            )
        ]
    return []


@checks.register(TAG, deploy=True)
def check_demo_model(app_configs=None, **kwargs):
    """The demo model is no moderation model: deployment advice."""
    try:
        embedder = get_embedder()
    except EmbedderError:
        return []  # moderation.W001
    if embedder.model_id.startswith("demo:"):
        return [
            checks.Warning(
                f"The embedder is the demo model {embedder.model_id}; it only understands colours.",
                hint="Configure a real CLIP model in MODERATION['EMBEDDER'] (see docs/embedders.md).",
                id="moderation.W002",
            )
        ]
    return []


@checks.register(TAG)
def check_queue(app_configs=None, **kwargs):
    cluster = getattr(settings, "Q_CLUSTER", {})
    timeout, retry = cluster.get("timeout"), cluster.get("retry")
    if timeout is None or retry is None or retry <= timeout:
        return [
            checks.Error(
                f"Q_CLUSTER has timeout={timeout} and retry={retry}; "
                "a task would be delivered twice while it still runs.",
                hint="Set both, with retry larger than timeout.",
                id="moderation.E002",
            )
        ]
    return []


@checks.register(TAG, checks.Tags.models)
def check_image_fields(app_configs=None, **kwargs):
    found = []
    for spec in specs():
        field = spec.model._meta.get_field(spec.image_field)
        if not isinstance(field, ModeratedImageField):
            found.append(
                checks.Warning(
                    f"{spec.label}.{spec.image_field} is a {type(field).__name__}: uploaded photos are stored under "
                    "the seller's file name and extension with every byte the seller sent, and only the API checks "
                    "that the pipeline can decode them.",
                    hint="Declare it as moderation.uploads.ModeratedImageField, make a migration, then run "
                    "`manage.py moderation_sanitize_images` for the photos already stored.",
                    obj=field,
                    id="moderation.W003",
                )
            )
    return found


def _migrated_dimensions(loader: MigrationLoader) -> dict:
    """{(app_label, model_name): {field name: dimensions}} as the migration files leave them."""
    state = loader.project_state()
    return {
        key: {name: getattr(model_state.fields.get(name), "dimensions", None) for name in VECTOR_FIELDS}
        for key, model_state in state.models.items()
    }


def _moderated_models(app_configs):
    return [spec.model for spec in specs() if app_configs is None or spec.model._meta.app_config in app_configs]


@checks.register(TAG, checks.Tags.models)
def check_managers(app_configs=None, **kwargs):
    """The admin, the API and search call the moderation queries on a moderated model's
    default manager (``needs_review()``, ``public()``, ...): a host's own manager must keep them."""
    found = []
    for model in _moderated_models(app_configs):
        manager = model._default_manager
        queryset = manager.get_queryset()  # builds a QuerySet; runs no query
        if not isinstance(queryset, ModeratedQuerySet):
            found.append(
                checks.Error(
                    f"The default manager of {model._meta.label}, {manager.name}, makes a {type(queryset).__name__}, "
                    "not a moderation.models.ModeratedQuerySet: the review queue, the API and search would fail "
                    "on its needs_review(), public(), flagged_for() and visible_to().",
                    hint="Build the manager's queryset on ModeratedQuerySet: "
                    "class MyQuerySet(ModeratedQuerySet), and objects = MyQuerySet.as_manager().",
                    obj=model,
                    id="moderation.E006",
                )
            )
    return found


@checks.register(TAG, checks.Tags.models)
def check_vector_migrations(app_configs=None, **kwargs):
    """The vector fields' width (MODERATION['DIMENSIONS']) against the migration files.

    A warning, as Django's own for model changes without a migration: an error would
    stop ``makemigrations``, the very command that writes the migration. Until it is
    applied, tasks record ``wrong_dimensions`` and the database check (E004/W004) says so."""
    migrated = _migrated_dimensions(MigrationLoader(None, ignore_no_migrations=True))
    found = []
    for model in _moderated_models(app_configs):
        fields = migrated.get((model._meta.app_label, model._meta.model_name), {})
        for name, width in fields.items():
            built = model._meta.get_field(name).dimensions
            if width is not None and width != built:
                found.append(
                    checks.Warning(
                        f"{model._meta.label}.{name} is halfvec({built}) (MODERATION['DIMENSIONS']), "
                        f"but its migrations make it halfvec({width}).",
                        hint=f"Run makemigrations. {WIDTH_HINT}",
                        obj=model,
                        id="moderation.W005",
                    )
                )
    return found


@checks.register(TAG, checks.Tags.database)
def check_vector_columns(app_configs=None, databases=None, **kwargs):
    """The vector columns' width in the database against the embedder's (`check
    --database default`, and `migrate`). A migration not applied yet that brings the
    columns to the embedder's width is only a warning, so that `migrate` can apply it."""
    if not databases:
        return []
    try:
        dimensions = get_embedder().dimensions
    except EmbedderError:
        return []  # moderation.W001 says why
    found = []
    for alias in databases:
        if connections[alias].vendor != "postgresql":
            continue  # moderation.E008
        loader = MigrationLoader(connections[alias])
        migrated = _migrated_dimensions(loader)
        unapplied = {
            app_label for app_label, name in loader.graph.nodes if (app_label, name) not in loader.applied_migrations
        }
        for model in _moderated_models(app_configs):
            for name, width in vector_dimensions(model, using=alias).items():
                if width == dimensions:
                    continue
                message = (
                    f"The column {model._meta.db_table}.{name} in the database {alias!r} is halfvec({width}), "
                    f"but the embedder makes {dimensions}-dimension vectors."
                )
                key = (model._meta.app_label, model._meta.model_name)
                if model._meta.app_label in unapplied and migrated.get(key, {}).get(name) == dimensions:
                    found.append(checks.Warning(message, hint="Run migrate.", obj=model, id="moderation.W004"))
                else:
                    found.append(checks.Error(message, hint=WIDTH_HINT, obj=model, id="moderation.E004"))
    return found


@checks.register(TAG)
def check_embedder_deadline(app_configs=None, **kwargs):
    """A task's first embedder call, for ``BATCH_SIZE`` objects, must fit its time budget
    (``tasks.task_budget_seconds``): a task starts its other calls only within the budget,
    but always starts the first, and django-q2 kills a worker past its timeout (recording nothing)."""
    timeout, budget = getattr(settings, "Q_CLUSTER", {}).get("timeout"), task_budget_seconds()
    try:
        embedder = get_embedder()
    except EmbedderError:
        return []  # moderation.W001
    worst = embedder.worst_case_seconds(moderation_settings.BATCH_SIZE)
    if budget is None or worst is None or worst <= budget:
        return []
    return [
        checks.Error(
            f"Scoring MODERATION['BATCH_SIZE'] = {moderation_settings.BATCH_SIZE} objects may wait {worst:.0f} s "
            f"on {embedder.model_id}, more than a task's budget of {budget:.0f} s ({TIMEOUT_SHARE:.0%} of "
            f"Q_CLUSTER['timeout'] = {timeout} s): django-q2 would kill the worker before the task could record "
            "the failure.",
            hint="Lower deadline_seconds, max_retries or max_wait in MODERATION['EMBEDDER']['OPTIONS'] (or "
            "MODERATION['BATCH_SIZE']), or raise Q_CLUSTER['timeout'] and Q_CLUSTER['retry'].",
            obj=embedder,
            id="moderation.E005",
        )
    ]


@checks.register(TAG, checks.Tags.models)
def check_registrations(app_configs=None, **kwargs):
    """``register()`` declarations that could not be accepted (``registry.refused``)."""
    return [
        checks.Error(
            problem,
            hint="Fix the register() call of the model: a ModeratedModel subclass, and the names of its own fields.",
            obj=model,
            id="moderation.E007",
        )
        for model, problems in refused()
        if app_configs is None or model._meta.app_config in app_configs
        for problem in problems
    ]


@checks.register(TAG)
def check_database_engine(app_configs=None, **kwargs):
    """A database that would hold moderation's tables is PostgreSQL (read from the
    settings: no connection). On any other, ``migrate`` would fail half-way through
    with the database's own error (SQLite: ``near "[]": syntax error``)."""
    held = [Decision, *(spec.model for spec in specs())]
    found = []
    for alias in connections:
        database = connections[alias]
        if database.vendor == "postgresql":
            continue
        tables = [model._meta.label for model in held if router.allow_migrate_model(alias, model)]
        if tables:
            found.append(
                checks.Error(
                    f"The database {alias!r} is {database.display_name} ({database.settings_dict['ENGINE']}), but "
                    f"it would hold {', '.join(tables)}: moderation needs PostgreSQL with the pgvector extension "
                    "(vector columns, HNSW indexes, arrays).",
                    hint=f"Point DATABASES[{alias!r}] at PostgreSQL 13 or later with pgvector "
                    f"{'.'.join(map(str, MIN_VECTOR_VERSION))} or later (ENGINE "
                    "'django.db.backends.postgresql'), or route these models to such a database.",
                    id="moderation.E008",
                )
            )
    return found


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit()) if text else ()


@checks.register(TAG, checks.Tags.database)
def check_vector_extension(app_configs=None, databases=None, **kwargs):
    """The PostgreSQL server has pgvector at ``MIN_VECTOR_VERSION`` or later (`check
    --database default`, and `migrate`, which creates the extension when it may)."""
    if not databases:
        return []
    wanted = ".".join(map(str, MIN_VECTOR_VERSION))
    found = []
    for alias in databases:
        database = connections[alias]
        if database.vendor != "postgresql":
            continue  # moderation.E008
        with database.cursor() as cursor:
            cursor.execute(
                "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
            )
            available, installed = cursor.fetchone() or (None, None)
        if installed and _version(installed) < MIN_VECTOR_VERSION:
            message = f"The database {alias!r} has pgvector {installed}; moderation needs {wanted} or later."
            if _version(available) >= MIN_VECTOR_VERSION:
                hint = "Run `ALTER EXTENSION vector UPDATE;` in that database as a superuser."
            else:
                hint = f"Install pgvector {wanted} or later on the server, then `ALTER EXTENSION vector UPDATE;`."
        elif not installed and _version(available) < MIN_VECTOR_VERSION:
            have = f"pgvector {available}" if available else "no pgvector (the vector extension)"
            message = f"The PostgreSQL server of the database {alias!r} has {have}; moderation needs {wanted} or later."
            hint = f"Install pgvector {wanted} or later on the server (a managed service: enable its pgvector)."
        else:
            continue
        found.append(checks.Error(message, hint=hint, id="moderation.E009"))
    return found


@checks.register(TAG, checks.Tags.models)
def check_upload_order(app_configs=None, **kwargs):
    """Without ``created_field`` the earliest upload of a photo is the object with the
    smallest primary key (``ModerationSpec.upload_order``): the order of creation only for
    an auto-increment key. With UUIDs the original of a reused photo is chosen by chance."""
    return [
        checks.Warning(
            f"{spec.model._meta.label} is keyed by a {type(spec.model._meta.pk).__name__}, which is not in the "
            "order of creation, and its register() names no created_field: the duplicate check would take the "
            "object with the smallest key for the original and flag the earlier upload.",
            hint="Name a creation timestamp: register(..., created_field='created_at') with "
            "created_at = models.DateTimeField(auto_now_add=True) on the model.",
            obj=spec.model,
            id="moderation.W006",
        )
        for spec in specs()
        if (app_configs is None or spec.model._meta.app_config in app_configs)
        and not spec.created_field
        and not isinstance(spec.model._meta.pk, AutoFieldMixin)
    ]


@checks.register(TAG, checks.Tags.models)
def check_vector_indexes(app_configs=None, **kwargs):
    """Each vector field has its HNSW index (``ModeratedModel.Meta.indexes``). A model's own
    ``class Meta`` that does not inherit ``ModeratedModel.Meta`` drops them silently, and
    every search and duplicate lookup then scans the whole table. A warning, as W005: an
    error would stop ``makemigrations``, the command that adds the indexes."""
    found = []
    for model in _moderated_models(app_configs):
        indexed = {field for index in model._meta.indexes if isinstance(index, HnswIndex) for field in index.fields}
        for name in VECTOR_FIELDS:
            if name not in indexed:
                found.append(
                    checks.Warning(
                        f"{model._meta.label}.{name} has no HNSW index: similar-item search and the duplicate "
                        "check would read every row.",
                        hint="Declare the model's Meta as class Meta(ModeratedModel.Meta) (or add "
                        "*ModeratedModel.Meta.indexes to its indexes), then run makemigrations.",
                        obj=model,
                        id="moderation.W007",
                    )
                )
    return found


@checks.register(TAG)
def check_media_url(app_configs=None, **kwargs):
    """Photos and thumbnails are shown by their storage URL, ``MEDIA_URL`` + name: with
    ``MEDIA_URL`` empty or "/" (a new ``startproject`` sets none) they point at the site's
    own pages and the admin and the API show broken images."""
    if settings.MEDIA_URL not in ("", "/") or not _moderated_models(app_configs):
        return []
    return [
        checks.Warning(
            f"MEDIA_URL is {settings.MEDIA_URL!r}: the moderated models' photos and thumbnails would have no URL "
            "of their own, and the admin and the API would show them broken.",
            hint="Set MEDIA_URL = 'media/' and serve MEDIA_ROOT there (in development: urlpatterns += "
            "static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)).",
            id="moderation.W008",
        )
    ]
