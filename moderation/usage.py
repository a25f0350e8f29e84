"""The embedder's account: calls, inputs, latency and estimated cost, per day and model.

A task adds each embedder call it makes to one row per day and model id
(``EmbedderUsage``): a few integers and a latency histogram, so the account keeps no
row per call and costs one small write per call, for the hosted and the local
embedder alike. Latency percentiles are read from the histogram's buckets
(``LATENCY_BUCKETS_MS``): an upper bound within one bucket, which is what a
dashboard needs (docs/admin.md).
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .embedders import Embedder
from .models import LATENCY_BUCKETS_MS, EmbedderUsage

# The projected monthly cost: the mean of the days shown, times this.
DAYS_PER_MONTH = 30


def record(embedder: Embedder, *, texts: int, images: int, seconds: float, failed: bool, today=None) -> None:
    """Add one call of ``embedder`` to today's row: ``texts`` + ``images`` inputs, taking
    ``seconds``; a failed call counts its latency, and costs nothing."""
    day = today or timezone.localdate()
    latency_ms = seconds * 1000
    cost = 0.0 if failed else embedder.estimated_cost(texts=texts, images=images)
    with transaction.atomic():
        EmbedderUsage.objects.bulk_create(
            [EmbedderUsage(day=day, model_id=embedder.model_id, latency_buckets=[0] * (len(LATENCY_BUCKETS_MS) + 1))],
            ignore_conflicts=True,
        )
        row = EmbedderUsage.objects.select_for_update().get(day=day, model_id=embedder.model_id)
        row.calls += 1
        row.failures += int(failed)
        row.inputs += texts + images
        row.latency_ms += latency_ms
        row.latency_buckets[bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        row.cost += cost
        row.save()


def percentile(buckets: list[int], fraction: float) -> float | None:
    """The latency (ms) under which ``fraction`` of the calls of ``buckets`` ended: the
    upper bound of the bucket that holds it (the last bucket's lower bound, for the
    open-ended one). None without calls."""
    total = sum(buckets)
    if not total:
        return None
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= fraction * total:
            return float(LATENCY_BUCKETS_MS[min(index, len(LATENCY_BUCKETS_MS) - 1)])
    return float(LATENCY_BUCKETS_MS[-1])


def account(*, days: int = 7, today=None) -> dict:
    """The last ``days`` days, per day and model: calls, failures, inputs, mean latency,
    p50 and p95 (ms), estimated cost; and the projected monthly cost: the mean daily cost
    of the days with calls, x ``DAYS_PER_MONTH``.
    ``{"days": [{"day", "model_id", "calls", ...}, ...], "cost": total, "monthly": projection}``."""
    today = today or timezone.localdate()
    rows = EmbedderUsage.objects.filter(day__gt=today - timedelta(days=days), day__lte=today)
    lines = [
        {
            "day": row.day,
            "model_id": row.model_id,
            "calls": row.calls,
            "failures": row.failures,
            "inputs": row.inputs,
            "mean_ms": row.latency_ms / row.calls if row.calls else None,
            "p50_ms": percentile(row.latency_buckets, 0.5),
            "p95_ms": percentile(row.latency_buckets, 0.95),
            "cost": row.cost,
        }
        for row in rows
    ]
    cost = sum(line["cost"] for line in lines)
    active = len({line["day"] for line in lines}) or 1
    return {"days": lines, "cost": cost, "monthly": cost / active * DAYS_PER_MONTH}
