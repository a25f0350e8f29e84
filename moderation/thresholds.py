"""Thresholds stored in the database: reading them for scoring, changing them with an
audit row, and proposing them from moderators' decisions (calibration).

Scoring reads them through ``scoring.thresholds_for``, over the settings' defaults.
A process keeps what it read (``stored``) until a threshold is saved or deleted in it,
or ``MODERATION`` changes; a task reads them afresh for each batch (``reset``), since
the admin or ``moderation_calibrate`` change them in other processes.

Calibration learns ``CONSISTENCY_MIN`` per category: moderators' rejections of
text/photo mismatches are what should be flagged, their approvals what should not.
Plain numpy, so the pipeline never imports the evaluation's libraries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .models import DECIDED_STATUSES, FlagReason, ModerationStatus, StoredThreshold, ThresholdChange
from .registry import ModerationSpec

_cache: dict[str, dict] = {}


def stored(label: str) -> dict[tuple[str, str], float]:
    """{(category or "", key): value} stored for the model ``label`` (app_label.model),
    rows naming the model over rows for every model. One query, then cached."""
    if label not in _cache:
        rows = StoredThreshold.objects.filter(model_label__in=["", label]).order_by("-model_label")
        found: dict[tuple[str, str], float] = {}
        for row in rows:
            found.setdefault((row.category, row.key), row.value)
        _cache[label] = found
    return _cache[label]


def reset(**kwargs) -> None:
    """Forget what was read: the next ``stored`` reads the database."""
    _cache.clear()


def _reset_on_settings(*, setting: str, **kwargs) -> None:
    if setting == "MODERATION":
        reset()


setting_changed.connect(_reset_on_settings)
post_save.connect(reset, sender=StoredThreshold)
post_delete.connect(reset, sender=StoredThreshold)


def set_threshold(
    key: str, value: float | None, *, model_label: str = "", category: str = "", actor=None, source: str, note=""
) -> ThresholdChange | None:
    """Store (``value``) or remove (None) one threshold, with a ``ThresholdChange`` row
    naming the ``actor`` (None: the system) and the ``source`` ("admin", "calibrate").
    Returns the change, or None when the value is already the stored one."""
    with transaction.atomic():
        row = (
            StoredThreshold.objects.select_for_update()
            .filter(model_label=model_label, category=category, key=key)
            .first()
        )
        old = row.value if row else None
        if old == value:
            return None
        if value is None:
            row.delete()
        elif row is None:
            StoredThreshold.objects.create(model_label=model_label, category=category, key=key, value=value)
        else:
            row.value = value
            row.save(update_fields=["value", "updated_at"])
        return ThresholdChange.objects.create(
            model_label=model_label,
            category=category,
            key=key,
            old_value=old,
            new_value=value,
            actor=actor,
            source=source,
            note=note,
        )


def decided_examples(spec: ModerationSpec, *, model_id: str) -> tuple[list[tuple[str, float, bool]], list]:
    """(examples, left out) of the objects a moderator decided on, scored by ``model_id``.
    Examples are (category label, consistency score, should flag): rejected = should
    flag, approved = should not. A rejection for other reasons than the text/photo
    agreement says nothing about it and is left out: (category label, its other reasons)."""
    queryset = spec.model._default_manager.filter(
        moderation_status__in=DECIDED_STATUSES, embedding_model=model_id, consistency_score__isnull=False
    )
    fields = ["moderation_status", "consistency_score", "flag_reasons"]
    if spec.category_field:
        fields.append(spec.category_field)
    rows = list(queryset.values_list(*fields))
    labels = spec.category_display({row[3] for row in rows}) if spec.category_field else {}
    examples, left_out = [], []
    for status, consistency, reasons, *category in rows:
        label = labels.get(category[0], "") if category else ""
        rejected = status == ModerationStatus.REJECTED
        others = sorted(set(reasons) - {FlagReason.TEXT_IMAGE_MISMATCH})
        if rejected and others:
            left_out.append((label, others))
        else:
            examples.append((label, consistency, rejected))
    return examples, left_out


class Outcome:
    """Why a ``Proposal`` changes nothing (its ``outcome``); "" when it proposes a change."""

    TOO_FEW = "too_few"  # fewer decisions than asked for
    ONE_KIND = "one_kind"  # only rejections, or only approvals
    UNREACHED = "unreached"  # no threshold reaches the target precision
    NO_GAIN = "no_gain"  # the proposal does what the current threshold does


@dataclass
class Proposal:
    """A proposed ``CONSISTENCY_MIN`` for one category, with what it would have done on
    the decisions it was learned from (precision and recall of flagging what moderators
    rejected; None when it flags nothing, or there was nothing to flag). ``decisions``
    counts those used, ``rejected`` the rejections among them; ``left_out`` = {flag
    reason: rejections left out for it}; ``outcome`` an ``Outcome`` or ""."""

    category: str
    decisions: int
    rejected: int
    current: float
    proposed: float | None
    precision: float | None = None
    recall: float | None = None
    current_precision: float | None = None
    current_recall: float | None = None
    left_out: dict[str, int] = field(default_factory=dict)
    outcome: str = ""


def precision_recall(scores: np.ndarray, should_flag: np.ndarray, threshold: float) -> tuple:
    """(precision, recall) of flagging ``scores`` below ``threshold``."""
    flagged = scores < threshold
    hits = int((flagged & should_flag).sum())
    precision = hits / int(flagged.sum()) if flagged.any() else None
    recall = hits / int(should_flag.sum()) if should_flag.any() else None
    return precision, recall


def propose_consistency_min(examples: list[tuple[float, bool]], *, target_precision: float) -> tuple:
    """The ``CONSISTENCY_MIN`` that flags the most of what moderators rejected while at
    least ``target_precision`` of what it flags was rejected: (threshold, precision,
    recall), or (None, None, None) when no threshold reaches it. Candidates are the
    midpoints between neighbouring scores, so a threshold never sits on a score."""
    scores = np.array([score for score, _ in examples], dtype=float)
    should_flag = np.array([flag for _, flag in examples], dtype=bool)
    values = np.unique(scores)
    best = (None, None, None)
    for threshold in (values[:-1] + values[1:]) / 2 if len(values) > 1 else []:
        precision, recall = precision_recall(scores, should_flag, threshold)
        if precision is not None and precision >= target_precision and (best[2] is None or recall > best[2]):
            best = (round(float(threshold), 4), precision, recall)
    return best


def calibrate(
    examples: list[tuple[str, float, bool]],
    left_out: list[tuple[str, list[str]]],
    *,
    current: dict[str, float],
    min_decisions: int,
    target_precision: float,
) -> list[Proposal]:
    """A ``Proposal`` per category among ``decided_examples``' examples and left out;
    ``current`` = {category: CONSISTENCY_MIN in force}. A proposal is a change only with
    at least ``min_decisions`` decisions, both kinds among them, a threshold that reaches
    ``target_precision``, and more recall or precision than the current one. Changes nothing."""
    by_category: dict[str, list] = {category: [] for category, _ in left_out}
    for category, score, should_flag in examples:
        by_category.setdefault(category, []).append((score, should_flag))
    proposals = []
    for category, mine in sorted(by_category.items()):
        scores = np.array([s for s, _ in mine], dtype=float)
        flags = np.array([f for _, f in mine], dtype=bool)
        proposal = Proposal(category, len(mine), int(flags.sum()), current[category], None)
        for _, reasons in (entry for entry in left_out if entry[0] == category):
            for reason in reasons:
                proposal.left_out[reason] = proposal.left_out.get(reason, 0) + 1
        proposal.current_precision, proposal.current_recall = precision_recall(scores, flags, proposal.current)
        if len(mine) < min_decisions:
            proposal.outcome = Outcome.TOO_FEW
        elif proposal.rejected in (0, len(mine)):
            proposal.outcome = Outcome.ONE_KIND
        else:
            proposal.proposed, proposal.precision, proposal.recall = propose_consistency_min(
                mine, target_precision=target_precision
            )
            if proposal.proposed is None:
                proposal.outcome = Outcome.UNREACHED
            elif (proposal.precision, proposal.recall) == (proposal.current_precision, proposal.current_recall):
                proposal.outcome = Outcome.NO_GAIN
        proposals.append(proposal)
    return proposals
