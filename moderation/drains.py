"""The save path's drains: one task per model scores what sellers saved, not one task per save.

Every django-q2 task costs the broker's insert, pull, hand-off and acknowledgement,
about as much as scoring a listing (docs/benchmarks.md), so one task per saved listing
caps the save path below django-q2's own task rate. With ``DRAIN_SAVES`` (and
``COALESCE``) on, a save queues a *drain* of its model (``moderation.tasks.drain``)
only when none is queued and not yet started; the queued one will pick the listing
up. The marker is a row of ``Drain`` per model label, in the database, so that every
web process and worker shares it: one statement per save.

Why no saved object is left waiting (the ordering argument):

1. The save's transaction commits the object as ``pending`` *before* the save looks
   at the marker (``transaction.on_commit``).
2. A drain clears the marker (``started``, committed at once) *before* it selects the
   waiting objects (``moderation.claims.claim``).
3. The save's check is one statement that sets the marker when it is absent and
   queues a drain only then (``request``); the row lock of the marker orders it with
   the drain's clear. A save that found the marker set ran before the clear of some
   drain that has not started yet; that drain's selection runs after the clear, so
   after the object's commit: it sees the object. A save that found it absent (or
   stale) queued a drain itself.
4. A drain takes at most ``BATCH_SIZE`` objects. When it leaves waiting ones behind
   (it released claimed candidates it had no room for, or every candidate it looked
   at was held by other tasks), it queues the next drains before embedding (``follow``,
   one per ``BATCH_SIZE`` left, without the marker), so other workers work on the
   backlog in parallel. A candidate another task held only to release it is covered by
   that task's own ``follow``. Any drain clears the marker when it starts, so the
   argument of step 3 holds whichever drain clears it. ``follow`` queues none when as
   many of its drains as the cluster has workers are queued and not started
   (``follow_limit``): those are still to start, and each that leaves objects waiting
   follows in turn, so the backlog stays covered with at most that many queued.
5. A marker older than ``DRAIN_MARKER_SECONDS`` (``stale_after_seconds``: a drain
   lost by the Redis broker, a save process killed between the marker and the
   enqueue) counts as absent. Objects saved meanwhile are ``pending`` with their
   ``moderation_queued_at``: the next drain takes them, or the sweeper
   (``moderation.tasks.sweep``) after ``STALE_AFTER_SECONDS``, as for any lost task.

Forced re-scores, the admin's and the API's rescans, ``moderation_scan`` and the
sweeper still queue their own tasks (``moderation.queue``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.conf import Conf

from . import queue
from .conf import moderation_settings
from .models import Drain

logger = logging.getLogger("moderation")


def enabled() -> bool:
    """Whether saves queue drains: ``DRAIN_SAVES`` and ``COALESCE`` (a drain finds its
    objects through claims, which need session advisory locks: ``moderation.claims``)."""
    return moderation_settings.DRAIN_SAVES and moderation_settings.COALESCE


def stale_after_seconds() -> float:
    """Seconds after which a queued drain that has not started counts as lost:
    ``DRAIN_MARKER_SECONDS``. Short, because the marker only saves tasks: a drain still
    waiting behind a long queue when its marker goes stale costs one more drain task,
    while a drain the broker lost (the Redis broker never delivers a task again) makes
    every save until then queue nothing."""
    return float(moderation_settings.DRAIN_MARKER_SECONDS)


def _table() -> str:
    return connection.ops.quote_name(Drain._meta.db_table)


def request(label: str) -> bool:
    """Queue a drain of the model ``label`` unless one is queued and not yet started.

    One statement: it sets the marker when it is absent or stale, and only the caller
    that set it queues the task. Returns whether a drain was queued. Call it outside a
    transaction (the save's ``on_commit``, a task): the marker must be visible to the
    other processes as soon as it is set. If queuing fails (the broker is down), the
    marker is cleared again and the failure logged, not raised: the object waits for
    the sweeper (``STALE_AFTER_SECONDS``).
    """
    table = _table()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (label, queued_at) VALUES (%s, statement_timestamp()) "
            f"ON CONFLICT (label) DO UPDATE SET queued_at = EXCLUDED.queued_at "
            f"WHERE {table}.queued_at IS NULL "
            f"OR {table}.queued_at < statement_timestamp() - make_interval(secs => %s) RETURNING 1",
            [label, stale_after_seconds()],
        )
        queued = cursor.fetchone() is not None
    if not queued:
        return False
    try:
        queue.enqueue_drain(label)
    except Exception:
        # The object is committed and pending with its queued time: the sweeper queues
        # it once the broker is back. The seller's save succeeded, and must not answer
        # an error that a retry would turn into a second listing.
        started(label)
        logger.exception("could not queue a drain of %s: the broker failed; the sweeper will queue what waits", label)
        return False
    return True


def request_on_commit(label: str) -> None:
    """``request`` once the current transaction commits: the saved object is then
    committed before the marker is read (step 1 of the argument above)."""
    transaction.on_commit(lambda: request(label))


def follow_limit() -> int:
    """How many drains ``follow`` keeps queued and not started for a model, at most: the
    cluster's workers (``Q_CLUSTER['workers']``, django-q2's default, the CPU count,
    without it), at least 1. More cannot start at once; without a limit a large backlog
    queued about two drains per ``BATCH_SIZE`` it held (each drain following with up to
    two), half of them finding nothing left (docs/pipeline.md, "Drains")."""
    workers = getattr(settings, "Q_CLUSTER", {}).get("workers") or Conf.WORKERS
    return max(1, int(workers))


def follow(label: str, waiting: int) -> int:
    """Queue a drain of ``label`` for each ``BATCH_SIZE`` of the ``waiting`` objects a
    task saw and left (step 4), without the marker: one queued drain at a time would
    leave a worker idle while the broker delivers the next (the ORM broker polls), and
    the save path far below django-q2's own task rate. As many as keep the drains this
    queued and not yet started within ``follow_limit``; their count (``Drain.followers``)
    counts as 0 once ``DRAIN_MARKER_SECONDS`` passed since the last was queued (lost by
    the broker, as for the marker). Returns how many were queued."""
    wanted = -(-waiting // moderation_settings.BATCH_SIZE)
    now = timezone.now()
    with transaction.atomic():
        Drain.objects.get_or_create(label=label)
        row = Drain.objects.select_for_update().get(label=label)
        stale = row.followed_at is None or row.followed_at < now - timedelta(seconds=stale_after_seconds())
        queued = 0 if stale else row.followers
        count = min(wanted, max(0, follow_limit() - queued))
        if count:
            Drain.objects.filter(label=label).update(followers=queued + count, followed_at=now)
    for _ in range(count):
        queue.enqueue_drain(label, follower=True)
    return count


def started(label: str, *, follower: bool = False) -> None:
    """A drain of ``label`` starts: clear the marker, committed before it selects what
    waits (step 2). A save from now on queues the next drain. A ``follower`` (queued by
    ``follow``) also leaves the count of those queued and not started."""
    lower = ", followers = GREATEST(followers - 1, 0)" if follower else ""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {_table()} SET queued_at = NULL{lower} WHERE label = %s", [label])
