"""The moderation dashboard's report, as plain data: counts, how long the queue waits,
recent scoring, the text/photo agreement per category, the moderators' decisions per day.
The template draws it (admin/moderation/dashboard.html); the embedder's account is
``moderation.usage.account``."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from statistics import median

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, Count, OuterRef, Subquery
from django.db.models.functions import Cast, TruncDate
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.timesince import timesince

from moderation.models import Decision, FlagReason, ModerationStatus
from moderation.registry import ModerationSpec

BUCKETS = 10  # of the consistency score, over 0..1


def dashboard_report(spec: ModerationSpec, *, now=None) -> dict:
    """Counts by status, reason and error code, objects scored in the last hour and day,
    and the distribution of the consistency score per category, of one moderated model.

    ``histograms``: [{"category": label, "peak": the tallest bar's count, "bars":
    [{"scores": "0.0-0.1", "count": n, "share": n / peak (0..1)}, ...]}, ...]: each
    category on its own scale, so a small category is as legible as a large one.
    ``waiting``: the queue's oldest and median wait (``queue_wait``).
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
        "waiting": queue_wait(spec, now=now),
        "histograms": [
            {
                "category": category,
                "peak": max(counts),
                "bars": [
                    {
                        "scores": f"{i / BUCKETS:.1f}-{(i + 1) / BUCKETS:.1f}",
                        "count": count,
                        "share": count / max(counts),
                    }
                    for i, count in enumerate(counts)
                ],
            }
            for category, counts in sorted(histograms.items())
        ],
    }


def queue_wait(spec: ModerationSpec, *, now=None) -> dict:
    """How long what needs review has waited since it entered its status (its latest
    decision to that status), in words: ``{"count": n, "oldest": "2 hours, 5 minutes" |
    None, "median": ...}``."""
    now = now or timezone.now()
    entered = Decision.objects.filter(
        content_type=ContentType.objects.get_for_model(spec.model),
        object_pk=Cast(OuterRef("pk"), CharField()),
        to_status=OuterRef("moderation_status"),
    ).order_by("-created_at")
    since = (
        spec.model._default_manager.needs_review()
        .annotate(entered=Subquery(entered.values("created_at")[:1]))
        .values_list("entered", flat=True)
    )
    waits = [now - at for at in since if at is not None]
    if not waits:
        return {"count": 0, "oldest": None, "median": None}
    return {
        "count": len(waits),
        "oldest": timesince(now - max(waits), now),
        "median": timesince(now - median(waits), now),
    }


def decisions_per_moderator(*, days: int = 7, today=None) -> dict:
    """Decisions people made in the last ``days`` days, per moderator and day:
    ``{"days": [date, ...] (newest first), "rows": [(name, [count per day], total), ...]}``."""
    today = today or timezone.localdate()
    first = today - timedelta(days=days - 1)
    username = f"actor__{get_user_model().USERNAME_FIELD}"
    counts = (
        Decision.objects.filter(actor__isnull=False, created_at__date__gte=first)
        .annotate(day=TruncDate("created_at"))
        .values_list(username, "day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    dates = [today - timedelta(days=i) for i in range(days)]
    table: dict[str, dict] = {}
    for name, day, n in counts:
        table.setdefault(name, {})[day] = n
    return {
        "days": dates,
        "rows": [
            (name, [per_day.get(day, 0) for day in dates], sum(per_day.values()))
            for name, per_day in sorted(table.items())
        ],
    }
