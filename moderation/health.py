"""Health: whether the web process answers and reaches its database, and what the task
cluster has waiting (queue depth, oldest pending object, errors by code) and whether it
still runs tasks (the sweep's heartbeat).

Two plain Django views for a load balancer or a monitor; mount them where the site
wants (the demo: ``/health/`` and ``/health/cluster/``, docs/pipeline.md, "Health").
``manage.py moderation_health`` is the same cluster check for a supervisor.
"""

from __future__ import annotations

import logging
from collections import Counter

from django.db import DatabaseError, connection
from django.db.models import Count, Min
from django.http import JsonResponse
from django.utils import timezone
from django_q.brokers import get_broker

from .conf import moderation_settings
from .models import Heartbeat, ModerationStatus
from .registry import specs

# The heartbeat that the sweep writes: it is a scheduled task, so it runs only while the
# cluster's workers take tasks. A worker killed while it holds the task queue's read
# lock (django-q2 issue 23) leaves the cluster alive and running nothing.
SWEEP_HEARTBEAT = "sweep"

logger = logging.getLogger("moderation")


def beat(name: str = SWEEP_HEARTBEAT) -> None:
    """Record that the task ``name`` runs now; call it from that task only."""
    Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": timezone.now()})


def cluster_report() -> dict:
    """``{"queue_depth": int | None, "oldest_pending_seconds": float | None, "errors": {code: int},
    "heartbeat_seconds": float | None, "wedged": bool, "broker_reachable": bool}``: tasks
    waiting in the broker (None when it did not answer), how
    long the longest-waiting ``pending`` object has been queued, objects in ``error`` by
    code, over every registered model; how long ago the sweep last ran (None: never), and
    whether that is over ``HEARTBEAT_MAX_AGE_SECONDS`` (or never) while work waits."""
    now = timezone.now()
    oldest, errors = None, Counter()
    for spec in specs():
        rows = spec.model._default_manager
        queued = rows.filter(moderation_status=ModerationStatus.PENDING).aggregate(at=Min("moderation_queued_at"))["at"]
        oldest = queued if oldest is None or (queued is not None and queued < oldest) else oldest
        for row in (
            rows.filter(moderation_status=ModerationStatus.ERROR).values("moderation_error").annotate(n=Count("pk"))
        ):
            errors[row["moderation_error"]] += row["n"]
    try:
        depth = get_broker().queue_size()
    except Exception as exc:  # any broker's own error: redis' ConnectionError, a DatabaseError, ...
        logger.warning("the task broker did not answer: %r", exc)
        depth = None
    last = Heartbeat.objects.filter(name=SWEEP_HEARTBEAT).values_list("beat_at", flat=True).first()
    heartbeat = None if last is None else (now - last).total_seconds()
    stale = heartbeat is None or heartbeat > moderation_settings.HEARTBEAT_MAX_AGE_SECONDS
    return {
        "queue_depth": depth,
        "oldest_pending_seconds": None if oldest is None else (now - oldest).total_seconds(),
        "errors": dict(errors),
        "heartbeat_seconds": heartbeat,
        # A pending object counts even when its broker message is taken (the ORM broker
        # hides a delivered task until its retry): the object is the truth.
        "wedged": stale and (bool(depth) or oldest is not None),
        "broker_reachable": depth is not None,
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
    """200 ``{"status": "ok", **cluster_report()}``; 503 with ``"status":
    "broker_unreachable"`` when the task broker does not answer, or ``"wedged"`` when work
    waits and the sweep has not run for ``HEARTBEAT_MAX_AGE_SECONDS``."""
    report = cluster_report()
    if not report["broker_reachable"]:
        return JsonResponse({"status": "broker_unreachable", **report}, status=503)
    if report["wedged"]:
        return JsonResponse({"status": "wedged", **report}, status=503)
    return JsonResponse({"status": "ok", **report})
