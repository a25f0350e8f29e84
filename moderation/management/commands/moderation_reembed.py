from moderation.embedders import get_embedder
from moderation.management.base import BatchCommand
from moderation.models import ModerationStatus


class Command(BatchCommand):
    help = (
        "Embed again every object whose vectors were made by another model than the configured one "
        "(or --all). Old vectors serve until the new ones are written; decisions are kept. Objects in "
        "error are left alone (a photo that crashed the decoder would crash it again): the sweeper "
        "retries the transient ones, a rescan or moderation_scan the others."
    )
    all_help = "Re-embed every object, even current ones (not those in error)."

    def handle(self, *args, **options):
        self.model_id = get_embedder().model_id
        self.stdout.write(f"Embedding model: {self.model_id}")
        super().handle(*args, **options)

    def get_queryset(self, spec, *, every):
        queryset = spec.model._default_manager.exclude(moderation_status=ModerationStatus.ERROR)
        return queryset if every else queryset.exclude(embedding_model=self.model_id)
