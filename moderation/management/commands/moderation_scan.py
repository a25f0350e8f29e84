from django.core.management.base import BaseCommand

from moderation.models import ModerationStatus
from moderation.pipeline_commands import run_in_batches, target_specs


class Command(BaseCommand):
    help = (
        "Moderate objects in batches: pending and errored ones, or --all (decisions on unchanged content are kept). "
        "Queues django-q2 tasks, or runs inline with --sync."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Rescore every object, not only pending and error.")
        parser.add_argument("--sync", action="store_true", help="Run inline instead of queueing tasks.")
        parser.add_argument("--model", help="Only this model (app_label.model).")
        parser.add_argument("--batch-size", type=int, help="Objects per embedder call (default: BATCH_SIZE).")

    def handle(self, *args, all, sync, model, batch_size, **options):
        for spec in target_specs(model):
            queryset = spec.model._default_manager.all()
            if not all:
                queryset = queryset.filter(moderation_status__in=[ModerationStatus.PENDING, ModerationStatus.ERROR])
            run_in_batches(self, spec, queryset, sync=sync, force=all, batch_size=batch_size)
