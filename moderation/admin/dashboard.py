"""The moderation dashboard's report, as plain data: counts, recent scoring, and the
text/photo agreement per category. The template draws it (admin/moderation/dashboard.html)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from moderation.models import FlagReason, ModerationStatus
from moderation.registry import ModerationSpec

BUCKETS = 10  # of the consistency score, over 0..1


def dashboard_report(spec: ModerationSpec, *, now=None) -> dict:
    """Counts by status, reason and error code, objects scored in the last hour and day,
    and the distribution of the consistency score per category, of one moderated model.

    ``histograms``: [{"category": label, "bars": [{"scores": "0.0-0.1", "count": n,
    "share": n / the tallest bar's count of all categories (0..1)}, ...]}, ...].
    """
    now = now or timezone.now()
    queryset = spec.model._default_manager.all()
    by_status = dict(queryset.order_by().values_list("moderation_status").annotate(n=Count("pk")))
    reasons = Counter(
        reason
        for row in queryset.filter(moderation_status=ModerationStatus.FLAGGED).values_list("flag_reasons", flat=True)
        for reason in row
    )
    errors = dict(
        queryset.filter(moderation_status=ModerationStatus.ERROR)
        .order_by()
        .values_list("moderation_error")
        .annotate(n=Count("pk"))
    )
    histograms: dict[str, list[int]] = {}
    if spec.category_field:
        rows = list(
            queryset.filter(consistency_score__isnull=False).values_list(spec.category_field, "consistency_score")
        )
        labels = spec.category_display({value for value, _score in rows})
        for value, score in rows:
            bucket = min(BUCKETS - 1, max(0, int(score * BUCKETS)))
            histograms.setdefault(labels.get(value, "-"), [0] * BUCKETS)[bucket] += 1
    peak = max((max(counts) for counts in histograms.values()), default=0)
    try:
        changelist = reverse(f"admin:{spec.model._meta.app_label}_{spec.model._meta.model_name}_changelist")
    except NoReverseMatch:
        changelist = None
    return {
        "label": spec.model._meta.verbose_name_plural,
        "changelist": changelist,
        "by_status": [
            (ModerationStatus(status).label, by_status.get(status, 0), status) for status in ModerationStatus.values
        ],
        "by_reason": [(FlagReason(code).label, reasons.get(code, 0), code) for code in FlagReason.values],
        "errors": sorted(errors.items()),
        "scored_last_hour": queryset.filter(moderated_at__gte=now - timedelta(hours=1)).count(),
        "scored_last_day": queryset.filter(moderated_at__gte=now - timedelta(days=1)).count(),
        "histograms": [
            {
                "category": category,
                "bars": [
                    {
                        "scores": f"{i / BUCKETS:.1f}-{(i + 1) / BUCKETS:.1f}",
                        "count": count,
                        "share": count / peak if peak else 0.0,
                    }
                    for i, count in enumerate(counts)
                ],
            }
            for category, counts in sorted(histograms.items())
        ],
    }
