"""How right the flags are: a labelled set, or the moderators' decisions, held against
the thresholds in force; precision, recall, F1 and ROC-AUC per reason and per
category, the threshold that reaches a target precision, and two charts.

Needs the ``evaluate`` extra (scikit-learn for the metrics, matplotlib for the
charts). Only ``moderation_evaluate`` imports this module: the pipeline never does.

A stored object (an ``id`` row, a decision) is judged by its stored scores held
against the thresholds in force for its category now (``judged_now``), not by the
flags it got when it was last scored: after ``moderation_calibrate --apply`` the
numbers need no rescan.

A labelled set is a CSV file with a header and, per row, either ``id`` (a stored
object, judged as above) or ``photo`` (a file beside the CSV, scored now with the
configured embedder, without the database) with ``text`` and ``category``; and
``expected``: ``ok``, or the flag reasons it should get, separated by ``;``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from django.core.exceptions import ValidationError
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support, roc_auc_score

from . import scoring, thresholds
from .conf import moderation_settings
from .embedders import Embedder, EmbedderError, decode_listing_image
from .models import DECIDED_STATUSES, FlagReason, ModerationStatus
from .registry import ModerationSpec

# What each reason's check measures, larger = more suspicious; None: not measured. The
# reasons evaluated: ``resubmitted`` is no score (a moderator's earlier rejection).
REASON_SCORES = {
    FlagReason.TEXT_IMAGE_MISMATCH: lambda s: None if s.consistency is None else -s.consistency,
    FlagReason.CATEGORY_MISMATCH: lambda s: s.category_rank,
    FlagReason.PROHIBITED_ITEM: lambda s: max((item["score"] for item in s.prohibited_items), default=0.0),
    FlagReason.DUPLICATE_IMAGE: lambda s: s.duplicate_similarity or 0.0,
    FlagReason.REPOST: lambda s: s.duplicate_similarity or 0.0,
}


class LabelledSetError(ValueError):
    """A labelled set that cannot be read: the message names the row and the column."""


@dataclass
class Example:
    """One labelled object: its key (an id or a photo), category, scores as scored at
    the thresholds in force, and the flag reasons it should get (empty: ok)."""

    key: str
    category: str
    scores: scoring.Scores
    expected: set[str]


@dataclass
class Row:
    """Metrics of one reason or category: ``support`` examples, ``positives`` of them
    expected to be flagged; None where they are undefined (no positive, one class)."""

    name: str
    support: int
    positives: int
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None


def judged_now(scores: scoring.Scores, category: str, *, stored: dict) -> scoring.Scores:
    """``scores`` (as stored on an object) with the flag reasons and severity the pipeline
    would give them at ``scoring.thresholds_for(category, stored=stored)``, recorded in
    ``thresholds``. Every reason with a threshold is decided again: the text/photo
    agreement, the category's rank, each prohibited concept's score, the duplicate's
    similarity (a copy found then can be dropped, none found is never added: the
    duplicate lookup needs the other objects)."""
    limits = scoring.thresholds_for(category or None, stored=stored)
    concepts = {concept["name"]: concept["threshold"] for concept in moderation_settings.PROHIBITED_CONCEPTS}
    prohibited = [item for item in scores.prohibited_items if item["score"] >= concepts.get(item["concept"], np.inf)]
    checks = {
        FlagReason.TEXT_IMAGE_MISMATCH: scores.consistency is not None
        and scores.consistency < limits["CONSISTENCY_MIN"],
        FlagReason.CATEGORY_MISMATCH: scores.category_rank is not None
        and scores.category_rank > limits["CATEGORY_MAX_RANK"],
        FlagReason.PROHIBITED_ITEM: bool(prohibited),
    }
    copied = (scores.duplicate_similarity or 0.0) >= limits["DUPLICATE_MIN_SIMILARITY"]
    reasons = [reason for reason, flagged in checks.items() if flagged]
    reasons += [r for r in scores.flag_reasons if r in (FlagReason.DUPLICATE_IMAGE, FlagReason.REPOST) and copied]
    return scoring.with_severity(replace(scores, prohibited_items=prohibited, flag_reasons=reasons, thresholds=limits))


def _expected(value: str, line: int) -> set[str]:
    codes = {code.strip() for code in value.split(";") if code.strip()}
    if codes == {"ok"}:
        return set()
    unknown = codes - set(REASON_SCORES)
    if not codes or unknown:
        raise LabelledSetError(
            f"line {line}: expected is {value!r}; write ok, or flag reasons separated by ';' "
            f"({', '.join(REASON_SCORES)})."
        )
    return codes


def _rows(path: Path) -> list[tuple[int, dict]]:
    """The rows of the CSV file at ``path`` as (line where the row starts, {column: value}).
    Raises ``LabelledSetError`` naming the line of a row with more or fewer fields than
    the header, or of a quote never closed."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, strict=True)
        line = 2
        try:
            for row in reader:
                # DictReader puts extra fields under None and fills missing ones with None.
                given = sum(value is not None for value in row.values()) - (None in row) + len(row.pop(None, []))
                if given != len(reader.fieldnames):
                    raise LabelledSetError(
                        f"line {line}: {given} field(s), but the header has {len(reader.fieldnames)} "
                        f"({', '.join(reader.fieldnames)}); quote a value that holds a comma."
                    )
                rows.append((line, row))
                line = reader.line_num + 1
        except csv.Error as exc:
            raise LabelledSetError(
                f"line {line}: the CSV cannot be read ({exc}): a quote opened on this line is never closed?"
                if "end of data" in str(exc)
                else f"line {line}: the CSV cannot be read ({exc})."
            ) from exc
    return rows


def labelled_examples(path: Path, spec: ModerationSpec, embedder: Embedder) -> list[Example]:
    """The examples of the CSV labelled set at ``path`` (see the module's docstring).
    Raises ``LabelledSetError`` naming the line of a row it cannot use: a malformed
    row, an id that is not one of the model's keys or names no object, an id row whose
    ``category`` is not its object's, a photo that cannot be read, an unknown reason."""
    rows = _rows(path)
    if not rows or "expected" not in rows[0][1] or not {"id", "photo"} & set(rows[0][1]):
        raise LabelledSetError(f"{path}: the header needs 'expected' and 'id' or 'photo' (with 'text', 'category').")
    examples, photos = [], []
    stored = thresholds.stored(spec.label)
    for line, row in rows:
        expected = _expected(row.get("expected") or "", line)
        if row.get("id"):
            try:
                key = spec.model._meta.pk.to_python(row["id"])
            except ValidationError as exc:
                raise LabelledSetError(
                    f"line {line}: id {row['id']!r} is not a key of {spec.label}: {' '.join(exc.messages)}"
                ) from exc
            obj = spec.model._default_manager.filter(pk=key).first()
            if obj is None:
                raise LabelledSetError(f"line {line}: there is no {spec.label} with id {row['id']}.")
            category = spec.category_of(obj) or ""
            # An id row is judged as its object is: a category that says otherwise is a mistake in the set.
            if row.get("category") and row["category"] != category:
                raise LabelledSetError(
                    f"line {line}: category is {row['category']!r}, but {spec.label} {row['id']} is in "
                    f"{category!r}; leave category empty on id rows, or correct it."
                )
            scores = judged_now(scoring.Scores.stored_on(obj), category, stored=stored)
            examples.append(Example(row["id"], category, scores, expected))
        else:
            try:
                image = decode_listing_image((path.parent / row["photo"]).read_bytes(), embedder=embedder)
            except (OSError, ValidationError, EmbedderError) as exc:
                raise LabelledSetError(f"line {line}: the photo {row['photo']!r} cannot be read: {exc}") from exc
            photos.append((row["photo"], row.get("category") or "", row.get("text") or "", image, expected))
    if photos:
        labels = sorted(set(spec.category_labels()) | {category for _, category, *_ in photos if category})
        matrix = scoring.category_matrix(embedder, labels) if len(labels) > 1 else None
        concepts = scoring.concept_matrix(embedder)
        text_vectors, image_vectors = embedder.embed(texts=[p[2] for p in photos], images=[p[3] for p in photos])
        for (name, category, _text, _image, expected), text_vector, image_vector in zip(
            photos, text_vectors, image_vectors, strict=True
        ):
            limits = scoring.thresholds_for(category or None, stored=stored)
            scores = scoring.score_vectors(
                text_vector,
                image_vector,
                category=category,
                labels=labels,
                matrix=matrix,
                concepts=concepts,
                limits=limits,
            )
            scores.thresholds = limits
            examples.append(Example(name, category, scoring.with_severity(scores), expected))
    return examples


def decision_examples(spec: ModerationSpec, *, model_id: str) -> list[Example]:
    """The objects moderators decided on, scored by ``model_id``: a rejected one should
    have been flagged for the reasons it had (or for something, if it had none), an
    approved one should not have been flagged."""
    queryset = spec.model._default_manager.filter(moderation_status__in=DECIDED_STATUSES, embedding_model=model_id)
    if spec.category_field and spec.model._meta.get_field(spec.category_field).is_relation:
        queryset = queryset.select_related(spec.category_field)
    stored = thresholds.stored(spec.label)
    examples = []
    for obj in queryset.defer("text_vector", "image_vector"):
        scores = scoring.Scores.stored_on(obj)
        # What the moderator rejected is what the object was flagged for when it was decided.
        rejected = obj.moderation_status == ModerationStatus.REJECTED
        expected = (set(scores.flag_reasons) & set(REASON_SCORES) or {"flag"}) if rejected else set()
        category = spec.category_of(obj) or ""
        examples.append(Example(str(obj.pk), category, judged_now(scores, category, stored=stored), expected))
    return examples


def _row(name: str, truth: list[bool], predicted: list[bool], measured: list[float | None]) -> Row:
    positives = sum(truth)
    precision = recall = f1 = auc = None
    if positives or any(predicted):
        p, r, f, _ = precision_recall_fscore_support(
            truth, predicted, average="binary", pos_label=True, zero_division=np.nan
        )
        precision, recall, f1 = (None if np.isnan(v) else float(v) for v in (p, r, f))
    pairs = [(t, m) for t, m in zip(truth, measured, strict=True) if m is not None]
    if len({t for t, _ in pairs}) == 2:
        auc = float(roc_auc_score([t for t, _ in pairs], [m for _, m in pairs]))
    return Row(name, len(truth), positives, precision, recall, f1, auc)


def by_reason(examples: list[Example]) -> list[Row]:
    """One row per flag reason that the examples expect or got."""
    seen = {reason for e in examples for reason in (*e.expected, *e.scores.flag_reasons)}
    return [
        _row(
            reason,
            [reason in e.expected for e in examples],
            [reason in e.scores.flag_reasons for e in examples],
            [REASON_SCORES[reason](e.scores) for e in examples],
        )
        for reason in REASON_SCORES
        if reason in seen
    ]


def by_category(examples: list[Example]) -> list[Row]:
    """One row per category: flagged for anything vs. expected to be; ROC-AUC of the
    text/photo agreement, the one check every example has."""
    rows = []
    for category in sorted({e.category for e in examples}):
        mine = [e for e in examples if e.category == category]
        rows.append(
            _row(
                category or "-",
                [bool(e.expected) for e in mine],
                [bool(e.scores.flag_reasons) for e in mine],
                [REASON_SCORES[FlagReason.TEXT_IMAGE_MISMATCH](e.scores) for e in mine],
            )
        )
    return rows


def consistency_for_precision(examples: list[Example], *, target_precision: float) -> tuple:
    """The ``CONSISTENCY_MIN`` that flags the most text/photo mismatches at
    ``target_precision`` or better on these examples: (threshold, precision, recall),
    Nones when none reaches it (``thresholds.propose_consistency_min``)."""
    pairs = [
        (e.scores.consistency, FlagReason.TEXT_IMAGE_MISMATCH in e.expected)
        for e in examples
        if e.scores.consistency is not None
    ]
    return thresholds.propose_consistency_min(pairs, target_precision=target_precision)


def consistency_min_by_category(examples: list[Example]) -> dict[str, float]:
    """{category: the ``CONSISTENCY_MIN`` its examples were judged at}, sorted by category."""
    return {e.category: e.scores.thresholds["CONSISTENCY_MIN"] for e in sorted(examples, key=lambda e: e.category)}


def write_charts(examples: list[Example], folder: Path, *, title: str) -> list[Path]:
    """pr_curve.png (a precision/recall curve per reason that has both classes) and
    score_distribution.png (text/photo agreement of what should be flagged for a
    mismatch and of the rest, each category's threshold in force drawn across, one line
    per value naming its categories). ``title`` names the source, the model and the
    count of examples; it heads both charts. Returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(6, 4.5))
    axes = figure.add_subplot()
    for reason in REASON_SCORES:
        pairs = [(reason in e.expected, REASON_SCORES[reason](e.scores)) for e in examples]
        pairs = [(t, m) for t, m in pairs if m is not None]
        if len({t for t, _ in pairs}) == 2:
            precision, recall, _ = precision_recall_curve([t for t, _ in pairs], [m for _, m in pairs])
            axes.plot(recall, precision, label=reason)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=f"Precision / recall\n{title}")
    if axes.lines:
        axes.legend(loc="lower left")
    FigureCanvasAgg(figure).print_png(folder / "pr_curve.png")
    figure = Figure(figsize=(6, 4.5))
    axes = figure.add_subplot()
    mismatch = [e.scores.consistency for e in examples if FlagReason.TEXT_IMAGE_MISMATCH in e.expected]
    rest = [e.scores.consistency for e in examples if FlagReason.TEXT_IMAGE_MISMATCH not in e.expected]
    bins = np.linspace(-1, 1, 41)
    axes.hist([c for c in rest if c is not None], bins=bins, alpha=0.6, label="should not be flagged")
    axes.hist([c for c in mismatch if c is not None], bins=bins, alpha=0.6, label="text/photo mismatch")
    categories_at: dict[float, list[str]] = {}
    for category, threshold in consistency_min_by_category(examples).items():
        categories_at.setdefault(threshold, []).append(category or "-")
    for threshold, categories in sorted(categories_at.items()):
        label = f"CONSISTENCY_MIN {threshold:g} ({', '.join(categories)})"
        axes.axvline(threshold, color="black", linestyle="--", label=label)
    axes.set(xlabel="text/photo agreement (cosine)", ylabel="examples", title=f"Score distribution\n{title}")
    axes.legend(loc="upper left", fontsize="small")
    FigureCanvasAgg(figure).print_png(folder / "score_distribution.png")
    return [folder / "pr_curve.png", folder / "score_distribution.png"]
