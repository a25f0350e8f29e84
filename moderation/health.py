"""Health: whether the web process answers and reaches its database, and what the task
cluster has waiting (queue depth, oldest pending object, errors by code).

Two plain Django views for a load balancer or a monitor; mount them where the site
wants (the demo: ``/health/`` and ``/health/cluster/``, docs/pipeline.md, "Health").
"""

from __future__ import annotations

from collections import Counter

from django.db import DatabaseError, connection
from django.db.models import Count, Min
from django.http import JsonResponse
from django.utils import timezone
from django_q.brokers import get_broker

from .models import ModerationStatus
from .registry import specs


def cluster_report() -> dict:
    """``{"queue_depth": int, "oldest_pending_seconds": float | None, "errors": {code: int}}``:
    tasks waiting in the broker, how long the longest-waiting ``pending`` object has been
    queued, and objects in ``error`` by code, over every registered model."""
    oldest, errors = None, Counter()
    for spec in specs():
        rows = spec.model._default_manager
        queued = rows.filter(moderation_status=ModerationStatus.PENDING).aggregate(at=Min("moderation_queued_at"))["at"]
        oldest = queued if oldest is None or (queued is not None and queued < oldest) else oldest
        for row in (
            rows.filter(moderation_status=ModerationStatus.ERROR).values("moderation_error").annotate(n=Count("pk"))
        ):
            errors[row["moderation_error"]] += row["n"]
    return {
        "queue_depth": get_broker().queue_size(),
        "oldest_pending_seconds": None if oldest is None else (timezone.now() - oldest).total_seconds(),
        "errors": dict(errors),
    }


def web(request) -> JsonResponse:
    """200 ``{"status": "ok"}`` when this process reaches its database; 503 ``{"status":
    "unavailable"}`` otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def cluster(request) -> JsonResponse:
    """200 with ``cluster_report()``."""
    return JsonResponse({"status": "ok", **cluster_report()})
