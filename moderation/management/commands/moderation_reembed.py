from moderation.embedders import get_embedder
from moderation.management.base import BatchCommand


class Command(BatchCommand):
    help = (
        "Embed again every object whose vectors were made by another model than the configured one "
        "(or --all). Old vectors serve until the new ones are written; decisions are kept."
    )
    all_help = "Re-embed every object, even current ones."

    def handle(self, *args, **options):
        self.model_id = get_embedder().model_id
        self.stdout.write(f"Embedding model: {self.model_id}")
        super().handle(*args, **options)

    def get_queryset(self, spec, *, every):
        queryset = spec.model._default_manager.all()
        return queryset if every else queryset.exclude(embedding_model=self.model_id)
