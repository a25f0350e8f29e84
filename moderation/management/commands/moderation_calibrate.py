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
        examples, left_out = thresholds.decided_examples(spec, model_id=model_id)
        current = {
            category: scoring.thresholds_for(category or None, stored=stored)["CONSISTENCY_MIN"]
            for category in {example[0] for example in (*examples, *left_out)}
        }
        proposals = thresholds.calibrate(
            examples, left_out, current=current, min_decisions=min_decisions, target_precision=target_precision
        )
        self.stdout.write(
            f"{spec.label}, model {model_id}: {len(examples) + len(left_out)} decisions, {len(examples)} of them used"
            + (
                f"; {len(left_out)} rejected for other reasons than the text/photo agreement left out"
                if left_out
                else ""
            )
        )
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
        for p in proposals:
            self._explain(p, min_decisions=min_decisions, target_precision=target_precision)
        changes = [p for p in proposals if not p.outcome]
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

    def _explain(self, p: thresholds.Proposal, *, min_decisions: int, target_precision: float) -> None:
        """One line per category on what its proposal does, and one on what was left out."""
        name = p.category or "-"
        if p.left_out:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(p.left_out.items()))
            self.stdout.write(
                f"{name}: {sum(p.left_out.values())} rejection(s) left out, rejected for other reasons than the "
                f"text/photo agreement ({reasons})."
            )
        if p.outcome == thresholds.Outcome.TOO_FEW:
            self.stdout.write(f"{name}: no proposal: {p.decisions} of the {min_decisions} decisions it needs.")
        elif p.outcome == thresholds.Outcome.ONE_KIND:
            kind = "rejections" if p.rejected else "approvals"
            self.stdout.write(f"{name}: no proposal: only {kind} ({p.decisions}); it needs both kinds.")
        elif p.outcome == thresholds.Outcome.UNREACHED:
            self.stdout.write(f"{name}: no proposal: no threshold reaches a precision of {target_precision:g}.")
        elif p.outcome == thresholds.Outcome.NO_GAIN:
            self.stdout.write(
                f"{name}: keep the current threshold {p.current:g}: {p.proposed:g} has the same precision and recall."
            )
