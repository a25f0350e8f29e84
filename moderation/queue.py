"""Sending tasks to django-q2: the scoring of one object, of a batch, a drain, and on commit.

Tasks are named by dotted path, as django-q2 runs them; this module does not import
``moderation.tasks``, which runs them.
"""

from __future__ import annotations

from django.db import transaction
from django_q.tasks import async_task

# django-q2 stores a successful task's result and, with the default ``save_limit``,
# counts and prunes the stored ones after every task: that bookkeeping cost more than
# scoring a listing (docs/benchmarks.md). The outcome of a moderation task is already
# on the object and in its Decision rows, so successes are not stored; failures are.
TASK_OPTIONS = {"group": "moderation", "save": False}


def enqueue(label: str, pk, version: int, *, force: bool = False) -> None:
    """Queue the scoring of one object: ``moderation.tasks.moderate_object``."""
    async_task(
        "moderation.tasks.moderate_object",
        label,
        str(pk),
        version,
        force,
        task_name=f"moderate {label} {pk} v{version}",
        **TASK_OPTIONS,
    )


def enqueue_batch(label: str, items: list[tuple[str, int]], *, force: bool = False) -> None:
    """Queue the scoring of ``items`` = [(pk, version), ...] of one model: ``moderation.tasks.moderate_batch``."""
    async_task(
        "moderation.tasks.moderate_batch",
        label,
        items,
        force,
        task_name=f"moderate {label} x{len(items)}",
        **TASK_OPTIONS,
    )


def enqueue_drain(label: str, *, follower: bool = False) -> None:
    """Queue a drain of the model ``label``: ``moderation.tasks.drain`` scores the
    objects waiting (``moderation.drains`` decides when one is queued; ``follower``: one
    that ``drains.follow`` queued and counts). A save's drain is queued as ``(label,)``,
    as before ``follower`` existed, so that workers not yet upgraded still run it."""
    args = (label, True) if follower else (label,)
    async_task("moderation.tasks.drain", *args, task_name=f"drain {label}", **TASK_OPTIONS)


def enqueue_on_commit(label: str, pk, version: int, *, force: bool = False) -> None:
    """``enqueue`` once the current transaction commits, so the worker sees the committed row.

    ``robust``: a broker that refuses the task (Redis down) is logged by Django (logger
    ``django.db.backends.base``), not raised: the object is committed and ``pending``,
    and the sweeper queues it again (``STALE_AFTER_SECONDS``); the request that saved it
    succeeds instead of answering an error whose retry would save it twice."""
    transaction.on_commit(lambda: enqueue(label, pk, version, force=force), robust=True)
