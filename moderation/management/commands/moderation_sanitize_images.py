from collections import Counter

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from moderation.management.base import target_specs
from moderation.uploads import restore_photo

VERBS = {"restored": "re-stored", "safe": "already stored safely", "refused": "refused"}
DRY_VERBS = {**VERBS, "restored": "to re-store"}


class Command(BaseCommand):
    help = (
        "Store every moderated object's photo again through the upload rules (moderation.uploads): "
        "the picture alone, under a name and extension the app chooses. For photos stored before them. "
        "The old file is deleted once the row points at the new one; moderation states are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-stored; change nothing.")
        parser.add_argument("--model", help="Only this model (app_label.model).")

    def handle(self, *args, dry_run, model, **options):
        verbs = DRY_VERBS if dry_run else VERBS
        for spec in target_specs(model):
            outcome: Counter = Counter()
            for obj in spec.model._default_manager.order_by("pk").iterator():
                try:
                    outcome[restore_photo(spec, obj, dry_run=dry_run)] += 1
                except ValidationError as exc:
                    outcome["refused"] += 1
                    self.stderr.write(f"{spec.label} {obj.pk}: {exc.code}: {exc.messages[0]} (file left as it is)")
            counts = [f"{outcome.pop(key, 0)} {verb}" for key, verb in verbs.items()]
            counts += [f"{count} {key}" for key, count in sorted(outcome.items())]
            self.stdout.write(f"{spec.label}: {', '.join(counts)}")
