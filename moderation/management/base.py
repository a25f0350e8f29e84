"""What the moderation commands share: pick the registered models, score them in batches."""

from __future__ import annotations

from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from moderation import queue, tasks
from moderation.conf import moderation_settings
from moderation.registry import ModerationSpec, get_spec, specs


class BatchCommand(BaseCommand):
    """A command that scores objects of the registered models in batches."""

    all_help = "Every object, not only those that need it."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help=self.all_help)
        parser.add_argument("--sync", action="store_true", help="Run inline instead of queueing tasks.")
        parser.add_argument("--model", help="Only this model (app_label.model).")
        parser.add_argument("--batch-size", type=int, help="Objects per embedder call (default: BATCH_SIZE).")

    def get_queryset(self, spec: ModerationSpec, *, every: bool):
        """The objects of ``spec``'s model to score; override per command."""
        raise NotImplementedError

    #: Score again objects that are already scored (decisions are kept either way).
    force = True

    def handle(self, *args, all, sync, model, batch_size, **options):
        for spec in target_specs(model):
            queryset = self.get_queryset(spec, every=all)
            run_in_batches(self, spec, queryset, sync=sync, force=self.force or all, batch_size=batch_size)


def target_specs(label: str | None) -> list[ModerationSpec]:
    """The registered model ``label`` (``--model app_label.model``), or all; raises
    ``CommandError`` naming the registered ones."""
    if not label:
        return specs()
    try:
        return [get_spec(label)]
    except LookupError as exc:
        raise CommandError(f"{exc} Registered: {', '.join(s.label for s in specs()) or 'none'}.") from None


def run_in_batches(
    command: BaseCommand, spec: ModerationSpec, queryset, *, sync: bool, force: bool, batch_size: int | None
) -> Counter:
    """Score ``queryset`` in batches of ``batch_size``: inline (``sync``) or as queued tasks."""
    size = batch_size or moderation_settings.BATCH_SIZE
    rows = [(str(pk), version) for pk, version in queryset.order_by("pk").values_list("pk", "moderation_version")]
    command.stdout.write(f"{spec.label}: {len(rows)} object(s) {'to score' if sync else 'to queue'}")
    outcome: Counter = Counter()
    # The bar draws on the stream under Django's stderr wrapper, which would end each of
    # tqdm's "\r" redraws with a newline (and colour it as an error on a terminal).
    with tqdm(total=len(rows), unit="obj", file=command.stderr._out, disable=not rows) as bar:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            if sync:
                outcome.update(tasks.moderate_batch(spec.label, chunk, force))
            else:
                queue.enqueue_batch(spec.label, chunk, force=force)
                outcome["queued"] += len(chunk)
            bar.update(len(chunk))
    summary = ", ".join(f"{key}: {value}" for key, value in sorted(outcome.items())) or "nothing to do"
    command.stdout.write(f"{spec.label}: {summary}")
    return outcome
