"""System checks for settings that would make moderation silently wrong."""

from django.conf import settings
from django.core import checks

from .conf import moderation_settings
from .embedders import EmbedderError, get_embedder


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
def check_embedder_deadline(app_configs=None, **kwargs):
    """A task must finish its embedder calls before django-q2 kills its worker (which records nothing)."""
    timeout = getattr(settings, "Q_CLUSTER", {}).get("timeout")
    try:
        embedder = get_embedder()
    except EmbedderError:
        return []  # moderation.W001
    worst = embedder.worst_case_seconds(moderation_settings.BATCH_SIZE)
    if timeout is None or worst is None or worst < timeout:
        return []
    return [
        checks.Error(
            f"A task scoring MODERATION['BATCH_SIZE'] = {moderation_settings.BATCH_SIZE} objects may wait "
            f"{worst:.0f} s on {embedder.model_id}, not less than Q_CLUSTER['timeout'] = {timeout} s: django-q2 "
            "would kill the worker before the task could record the failure.",
            hint="Lower deadline_seconds, max_retries or max_wait in MODERATION['EMBEDDER']['OPTIONS'] (or "
            "MODERATION['BATCH_SIZE']), or raise Q_CLUSTER['timeout'] and Q_CLUSTER['retry'].",
            obj=embedder,
            id="moderation.E003",
        )
    ]
