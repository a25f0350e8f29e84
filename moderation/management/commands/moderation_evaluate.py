from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from moderation import evaluation, scoring, thresholds
from moderation.embedders import get_embedder
from moderation.management.base import target_specs


class Command(BaseCommand):
    help = (
        "How right the flags are at the thresholds in force for each object's category (stored objects are judged "
        "again from their stored scores, no rescan needed): precision, recall, F1 and ROC-AUC per flag reason and "
        "per category, on a labelled CSV set or on the moderators' decisions (rejected = should flag, approved = "
        "should not); the global CONSISTENCY_MIN that reaches a target precision; a PR curve and a score "
        "distribution (PNG)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--labelled", type=Path, help="A labelled set (CSV; docs/judgement.md). Default: decisions."
        )
        parser.add_argument("--model", help="The registered model (app_label.model); default: the first.")
        parser.add_argument("--target-precision", type=float, default=0.9)
        parser.add_argument("--output-dir", type=Path, default=Path("var/evaluation"), help="Where the charts go.")

    def handle(self, *args, labelled, model, target_precision, output_dir, **options):
        if not 0 < target_precision <= 1:
            raise CommandError("--target-precision is a fraction: more than 0, at most 1.")
        spec = target_specs(model)[0]
        embedder = get_embedder()
        self.stdout.write(f"{spec.label}, model {embedder.model_id}")
        if embedder.model_id.startswith("demo:"):
            self.stdout.write(
                self.style.WARNING(
                    "This is the colour-words demo model, not a real CLIP: these numbers show the evaluation "
                    "working and say nothing about a real model."
                )
            )
        try:
            if labelled:
                examples = evaluation.labelled_examples(labelled, spec, embedder)
            else:
                examples = evaluation.decision_examples(spec, model_id=embedder.model_id)
        except (OSError, evaluation.LabelledSetError) as exc:
            raise CommandError(str(exc)) from exc
        if not examples:
            raise CommandError(
                "Nothing to evaluate: no labelled rows, or no decisions on objects scored by this model."
            )
        source = labelled or "moderators' decisions"
        flagged = sum(bool(e.expected) for e in examples)
        self.stdout.write(f"{len(examples)} examples from {source}, {flagged} of them to be flagged\n")
        self._table("reason", evaluation.by_reason(examples))
        self._table("category", evaluation.by_category(examples))
        in_force = evaluation.consistency_min_by_category(examples)
        self.stdout.write(
            "CONSISTENCY_MIN in force: "
            + ", ".join(f"{category or '-'} {threshold:g}" for category, threshold in in_force.items())
        )
        current = scoring.thresholds_for(None, stored=thresholds.stored(spec.label))["CONSISTENCY_MIN"]
        threshold, precision, recall = evaluation.consistency_for_precision(examples, target_precision=target_precision)
        if threshold is None:
            self.stdout.write(
                f"No CONSISTENCY_MIN for every category (global; now {current:g}) reaches a precision of "
                f"{target_precision:g} on these examples; per category: manage.py moderation_calibrate."
            )
        else:
            # One threshold over every category's examples: calibrate learns them per category.
            self.stdout.write(
                f"CONSISTENCY_MIN {threshold:g} for every category (global; now {current:g}) reaches precision "
                f"{precision:.2f} at recall {recall:.2f} (target precision {target_precision:g}); per category: "
                "manage.py moderation_calibrate."
            )
        title = f"{labelled.name if labelled else source}, {embedder.model_id}, {len(examples)} examples"
        for path in evaluation.write_charts(examples, output_dir, title=title):
            self.stdout.write(f"wrote {path}")

    def _table(self, title: str, rows: list) -> None:
        def number(value):
            return "-" if value is None else f"{value:.2f}"

        self.stdout.write(f"{title:<22} {'n':>4} {'flag':>4} {'precision':>9} {'recall':>6} {'F1':>5} {'ROC-AUC':>7}")
        for row in rows:
            self.stdout.write(
                f"{row.name:<22} {row.support:>4} {row.positives:>4} {number(row.precision):>9} "
                f"{number(row.recall):>6} {number(row.f1):>5} {number(row.roc_auc):>7}"
            )
        self.stdout.write("")
