"""System checks for settings that would make moderation silently wrong."""

from django.conf import settings
from django.core import checks

from .conf import moderation_settings
from .embedders import EmbedderError, get_embedder
from .registry import specs
from .uploads import ModeratedImageField


@checks.register()
def check_embedder(app_configs=None, **kwargs):
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
    found = []
    if embedder.dimensions != moderation_settings.DIMENSIONS:
        found.append(
            checks.Error(
                f"The embedder {embedder.model_id} makes {embedder.dimensions}-dimension vectors, but the vector "
                f"columns have MODERATION['DIMENSIONS'] = {moderation_settings.DIMENSIONS}.",
                hint="Set MODERATION['DIMENSIONS'] to the embedder's width and make a migration, "
                "or choose another model.",
                id="moderation.E001",
            )
        )
    if embedder.model_id.startswith("demo:") and not settings.DEBUG:
        found.append(
            checks.Warning(
                f"The embedder is the demo model {embedder.model_id}; it only understands colours.",
                hint="Configure a real CLIP model in MODERATION['EMBEDDER'] (see docs/embedders.md).",
                id="moderation.W002",
            )
        )
    return found


@checks.register()
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


@checks.register()
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
