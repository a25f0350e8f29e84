from django.apps import AppConfig
from django.core.signals import setting_changed
from django.db.models.signals import post_migrate, pre_migrate


class ModerationConfig(AppConfig):
    name = "moderation"
    verbose_name = "Moderation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signal_handlers, statements  # noqa: F401  (checks registers itself)
        from .tasks import ensure_sweep_schedule
        from .vectors import create_vector_extension

        signal_handlers.connect()
        # Before any app's migrations, whatever the apps' labels (moderation.vectors).
        pre_migrate.connect(create_vector_extension, sender=self, dispatch_uid="moderation.vector_extension")
        post_migrate.connect(ensure_sweep_schedule, sender=self, dispatch_uid="moderation.sweep_schedule")
        # A changed setting or schema may change what a search statement compiles to.
        setting_changed.connect(statements.clear, dispatch_uid="moderation.statements")
        post_migrate.connect(statements.clear, dispatch_uid="moderation.statements")
