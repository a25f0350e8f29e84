from moderation.management.base import BatchCommand
from moderation.models import UNSCORED_STATUSES


class Command(BatchCommand):
    help = (
        "Moderate objects in batches: pending and errored ones (permanent errors too), or --all (decisions on "
        "unchanged content are kept). "
        "Queues django-q2 tasks, or runs inline with --sync."
    )
    all_help = "Rescore every object, not only pending and error."

    def get_queryset(self, spec, *, every):
        queryset = spec.model._default_manager.all()
        if every:
            return queryset
        return queryset.filter(moderation_status__in=UNSCORED_STATUSES)
