from django.core.management.base import BaseCommand, CommandError

from moderation import scoring, thresholds
from moderation.embedders import get_embedder
from moderation.management.base import target_specs


class Command(BaseCommand):
    help = (
        "Propose a CONSISTENCY_MIN per category from the moderators' decisions (rejected text/photo mismatches = "
        "should flag, approvals = should not), with the precision and recall each would have had; --apply stores "
        "them in the database (audited), where scoring reads them before the settings."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", help="The registered model (app_label.model); default: the first.")
        parser.add_argument("--min-decisions", type=int, default=30, help="Fewer decisions: no proposal.")
        parser.add_argument("--target-precision", type=float, default=0.9)
        parser.add_argument("--apply", action="store_true", help="Store the proposed thresholds.")

    def handle(self, *args, model, min_decisions, target_precision, apply, **options):
        if not 0 < target_precision <= 1:
            raise CommandError("--target-precision is a fraction: more than 0, at most 1.")
        if min_decisions < 1:
            raise CommandError("--min-decisions is at least 1.")
        spec = target_specs(model)[0]
        model_id = get_embedder().model_id
        stored = thresholds.stored(spec.label)
        examples = thresholds.decided_examples(spec, model_id=model_id)
        current = {
            category: scoring.thresholds_for(category or None, stored=stored)["CONSISTENCY_MIN"]
            for category, *_ in examples
        }
        proposals = thresholds.calibrate(
            spec, model_id=model_id, current=current, min_decisions=min_decisions, target_precision=target_precision
        )
        self.stdout.write(f"{spec.label}, model {model_id}: {len(examples)} decisions")
        if not proposals:
            self.stdout.write("No decisions on objects scored by this model: nothing to learn from.")
            return

        def number(value):
            return "-" if value is None else f"{value:.2f}"

        self.stdout.write(
            f"{'category':<20} {'decisions':>9} {'now':>7} {'precision':>9} {'recall':>6} "
            f"{'proposed':>8} {'precision':>9} {'recall':>6}"
        )
        for p in proposals:
            proposed = "-" if p.proposed is None else f"{p.proposed:g}"
            self.stdout.write(
                f"{p.category or '-':<20} {p.decisions:>9} {p.current:>7g} {number(p.current_precision):>9} "
                f"{number(p.current_recall):>6} {proposed:>8} {number(p.precision):>9} {number(p.recall):>6}"
            )
        skipped = [p.category or "-" for p in proposals if p.proposed is None]
        if skipped:
            self.stdout.write(
                f"No proposal for {', '.join(skipped)}: fewer than {min_decisions} decisions, only one kind of "
                f"decision, or no threshold reaches a precision of {target_precision:g}."
            )
        changes = [p for p in proposals if p.proposed is not None and p.proposed != p.current]
        if not apply:
            if changes:
                self.stdout.write("Run again with --apply to store the proposed thresholds.")
            return
        for p in changes:
            thresholds.set_threshold(
                "CONSISTENCY_MIN",
                p.proposed,
                model_label=spec.label,
                category=p.category,
                source="calibrate",
                note=f"{p.decisions} decisions; expected precision {number(p.precision)}, recall {number(p.recall)}",
            )
        self.stdout.write(self.style.SUCCESS(f"Stored {len(changes)} threshold(s); the next scan uses them."))
