from django.core.management.base import BaseCommand

from moderation.embedders import get_embedder
from moderation.pipeline_commands import run_in_batches, target_specs


class Command(BaseCommand):
    help = (
        "Embed again every object whose vectors were made by another model than the configured one "
        "(or --all). Old vectors serve until the new ones are written; decisions are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Re-embed every object, even current ones.")
        parser.add_argument("--sync", action="store_true", help="Run inline instead of queueing tasks.")
        parser.add_argument("--model", help="Only this model (app_label.model).")
        parser.add_argument("--batch-size", type=int, help="Objects per embedder call (default: BATCH_SIZE).")

    def handle(self, *args, all, sync, model, batch_size, **options):
        model_id = get_embedder().model_id
        self.stdout.write(f"Embedding model: {model_id}")
        for spec in target_specs(model):
            queryset = spec.model._default_manager.all()
            if not all:
                queryset = queryset.exclude(embedding_model=model_id)
            run_in_batches(self, spec, queryset, sync=sync, force=True, batch_size=batch_size)
