"""The django-q2 tasks: moderate one object, moderate a batch, sweep what was lost.

A task embeds outside any transaction (an embedder call may take seconds), then
writes each result through ``transitions.record_scores``, which checks under a row lock
that the content it scored is still current. Running a task twice writes once.
A task first claims what it scores and, when objects queue up, scores waiting ones
with its own in the same embedder call (``moderation.claims``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from . import claims, db, drains, duplicates, health, queue, scoring, thresholds, transitions, usage
from .conf import moderation_settings
from .embedders import (
    EmbedderConfigurationError,
    EmbedderError,
    PermanentEmbedError,
    TransientEmbedError,
    decode_listing_image,
    get_embedder,
)
from .models import UNSCORED_STATUSES, VECTOR_FIELDS, ModerationStatus, vector_dimensions
from .registry import ModerationSpec, get_spec, specs

logger = logging.getLogger("moderation")
S = ModerationStatus

# django-q2 kills a worker at Q_CLUSTER['timeout'], and a killed worker records nothing
# (its objects would end in `worker_crashed`). A task therefore starts an embedder call
# only if the call's worst case ends before this share of the timeout: the rest is left
# for writing the results and acknowledging the task.
TIMEOUT_SHARE = 0.9


def task_budget_seconds() -> float | None:
    """Seconds from a task's start by which its embedder calls must have ended: ``TIMEOUT_SHARE``
    of ``Q_CLUSTER['timeout']``; None without a timeout (django-q2 then kills no task)."""
    timeout = getattr(settings, "Q_CLUSTER", {}).get("timeout")
    return None if timeout is None else TIMEOUT_SHARE * timeout


def moderate_object(label: str, pk: str, version: int, force: bool = False) -> dict:
    return moderate_batch(label, [(pk, version)], force)


# How long a drain goes on taking batches while objects wait (seconds, within the task's
# budget). Ending a drain after one batch made the save path wait for the broker between
# batches (the ORM broker polls every Q_CLUSTER['poll'], 0.2 s): 96 listings/s against
# 399 for batch tasks on the same run (docs/benchmarks.md). Ending it after a slice lets
# other tasks (rescans, other models' drains) take the worker; its followers go on.
DRAIN_SLICE_SECONDS = 10.0


def drain(label: str, follower: bool = False) -> dict:
    """Score the objects of the model ``label`` that wait for a task, ``BATCH_SIZE`` at a
    time, until none wait or ``DRAIN_SLICE_SECONDS`` (at most the task's budget) would be
    passed by one more batch: the save path's task (``moderation.drains``). The marker is
    cleared first, so that a save from now on queues the next drain (and, for a
    ``follower``, the count of the followers queued is lowered); whenever a batch leaves
    objects waiting, the next drains are queued before it embeds (``drains.follow``), so
    that other workers take part and a drain that ends leaves a successor. Returns counts
    by outcome, as ``moderate_batch``, over all its batches."""
    drains.started(label, follower=follower)
    budget = task_budget_seconds()
    slice_seconds = DRAIN_SLICE_SECONDS if budget is None else min(DRAIN_SLICE_SECONDS, budget)
    started = time.monotonic()
    ends = started + slice_seconds
    total: Counter = Counter()
    while True:
        round_started = time.monotonic()
        outcome, taken, left = _batch(label, [], force=False, ends=None if budget is None else started + budget)
        total.update(outcome)
        now = time.monotonic()
        # Another batch only if this one took objects (not every candidate held by other
        # tasks) and left some, and one more as long as this one still ends in the slice.
        if not (taken and left) or now + (now - round_started) > ends:
            return dict(total)


def moderate_batch(label: str, items: list, force: bool = False) -> dict:
    """Score the objects ``items`` = [(pk, version), ...] of one model with one embedder call.

    With ``COALESCE`` on, the task first claims its objects (one held by another task
    is left to it: ``claimed``) and up to ``BATCH_SIZE`` in all with other pending
    objects waiting for their own tasks (``coalesced``), scored in the same call; see
    ``moderation.claims``. Returns counts by outcome, for django-q2's failure records
    and the logs.

    An embedder call is started only if it ends within ``task_budget_seconds()`` at the
    embedder's worst case (``worst_case_seconds``); the objects it would have scored
    are queued again in a new task, not charged an attempt (``postponed``). The task's
    first call always starts: check ``moderation.E005`` holds a call of ``BATCH_SIZE``
    objects to the budget.
    """
    budget = task_budget_seconds()
    return _batch(label, items, force=force, ends=None if budget is None else time.monotonic() + budget)[0]


def _batch(label: str, items: list, *, force: bool, ends: float | None) -> tuple[dict, int, int]:
    """``moderate_batch`` with its end (``time.monotonic()`` seconds, or None): (counts by
    outcome, how many objects it took, how many it saw waiting and left: ``claims.claim``)."""
    spec = get_spec(label)
    try:
        embedder = get_embedder()
    except EmbedderConfigurationError as exc:
        return _misconfigured(spec, items, exc), 0, 0
    # Keys as the database writes them, so that a claim's lock key matches.
    wanted = {str(spec.model._meta.pk.to_python(pk)): version for pk, version in items}
    if not moderation_settings.COALESCE:
        outcome, _scored, postponed = _moderate(spec, wanted, [], embedder, force=force, claimed=False, ends=ends)
        return _requeue_postponed(spec, postponed, outcome, force=force), len(wanted), 0
    extra = 0 if force else max(0, moderation_settings.BATCH_SIZE - len(wanted))
    with claims.claim(spec, list(wanted), extra=extra) as (own, others, left):
        if left and drains.enabled():
            # Objects wait that this task leaves, and some may have no task of their
            # own: the next drains, queued now, score them on other workers meanwhile.
            drains.follow(spec.label, left)
        outcome, scored, postponed = _moderate(
            spec, {pk: wanted[pk] for pk in own}, others, embedder, force=force, claimed=True, ends=ends
        )
    # Queued once the claims are released: a task that found them claimed would end.
    _requeue_postponed(spec, postponed, outcome, force=force)
    if len(own) < len(wanted):
        outcome["claimed"] = len(wanted) - len(own)
    # A seller's edit while this task embedded queued a task that found the object
    # claimed and ended, and this task's result, for the old version, was not written:
    # queue the new version.
    edited = list(
        spec.model._default_manager.filter(
            pk__in=scored, moderation_status=S.PENDING, moderation_retry_at__isnull=True
        ).values_list("pk", "moderation_version")
    )
    if edited:
        queue.enqueue_batch(spec.label, [(str(pk), version) for pk, version in edited])
        outcome["requeued"] = len(edited)
    return outcome, len(own) + len(others), left


def _requeue_postponed(spec: ModerationSpec, postponed: list, outcome: dict, *, force: bool) -> dict:
    """Queue ``postponed`` (objects, no attempt charged) in one new task; ``outcome`` gets their count."""
    if postponed:
        queue.enqueue_batch(spec.label, [(str(obj.pk), obj.moderation_version) for obj in postponed], force=force)
        outcome["postponed"] = len(postponed)
    return outcome


def _fits(embedder, count: int, ends: float | None) -> bool:
    """Whether scoring ``count`` objects together ends before ``ends`` (``time.monotonic()``
    seconds) at the embedder's worst case; always, without a budget or a worst case."""
    worst = embedder.worst_case_seconds(count)
    return ends is None or worst is None or time.monotonic() + worst <= ends


def _moderate(
    spec: ModerationSpec, wanted: dict, others: list, embedder, *, force: bool, claimed: bool, ends: float | None
):
    """Score ``wanted`` = {pk: version} if still due, and the ``others`` still pending.

    With the objects ``claimed``, one whose version moved on since the task was queued
    is scored in its current version (the newer version's task may have found it
    claimed). Each attempt is counted before the work starts. An object whose last
    attempt has no outcome killed its worker, or shared a batch with one that did: it
    is tried alone, as is one a crash would leave without attempts, so that a crash
    is never charged to the others of a batch twice; once its attempts reach
    ``MAX_ATTEMPTS`` it goes to ``error`` with ``worker_crashed``. A call after the first
    that might not end before ``ends`` is not started. Returns the counts by outcome, the
    keys of the objects scored and the objects postponed.
    """
    outcome: Counter = Counter()
    # The old vectors are not needed to compute new ones.
    queryset = spec.model._default_manager.filter(pk__in=[*wanted, *others]).defer(*VECTOR_FIELDS)
    if spec.category_field and spec.model._meta.get_field(spec.category_field).is_relation:
        queryset = queryset.select_related(spec.category_field)
    rows = {str(obj.pk): obj for obj in queryset}
    model_id, now = embedder.model_id, timezone.now()
    due, along = [], []
    for pk, version in wanted.items():
        obj = rows.get(pk)
        if obj is None or obj.moderation_version != version:
            outcome["superseded"] += 1
            if claimed and obj is not None and obj.moderation_status == S.PENDING:
                along.append(obj)
        elif not force and obj.moderation_status not in UNSCORED_STATUSES and obj.embedding_model == model_id:
            outcome["current"] += 1
        elif not force and obj.moderation_status == S.ERROR and not _retry_due(obj, now):
            # A permanent error (or one retried later) waits for a content change, a
            # rescan or moderation_scan: a re-delivered task must not crash a worker again.
            outcome["not_due"] += 1
        else:
            due.append(obj)
    along += [rows[pk] for pk in others if pk in rows and rows[pk].moderation_status == S.PENDING]
    if along:
        outcome["coalesced"] = len(along)
    if due or along:
        try:
            _check_dimensions(spec, embedder)
        except EmbedderConfigurationError as exc:
            outcome.update(_misconfigured(spec, [(obj.pk, obj.moderation_version) for obj in due + along], exc))
            return dict(outcome), [], []
    max_attempts = moderation_settings.MAX_ATTEMPTS
    together, alone = [], []
    for obj in due + along:
        if obj.moderation_started_at is not None and obj.moderation_attempts >= max_attempts:
            crashed = PermanentEmbedError(
                f"The worker died during the last of {obj.moderation_attempts} attempts (MODERATION['MAX_ATTEMPTS'] "
                f"= {max_attempts}): killed, out of memory, or crashed by this photo or text.",
                code="worker_crashed",
            )
            if transitions.record_failure(
                spec.model, obj.pk, version=obj.moderation_version, error=crashed, permanent=True
            ):
                outcome["error"] += 1
        elif obj.moderation_started_at is not None or obj.moderation_attempts + 1 >= max_attempts:
            alone.append([obj])
        else:
            together.append(obj)
    scored, postponed = [], []
    for index, objs in enumerate([together, *alone] if together else alone):
        if index and not _fits(embedder, len(objs), ends):
            postponed += objs
            continue
        scored += _attempt(spec, objs, embedder, force=force, outcome=outcome, ends=ends, postponed=postponed)
    return dict(outcome), scored, postponed


def _retry_due(obj, now) -> bool:
    """Whether an ``error`` object's retry time has come; a permanent error has none."""
    return obj.moderation_retry_at is not None and obj.moderation_retry_at <= now


def _misconfigured(spec: ModerationSpec, items: list, exc: EmbedderConfigurationError) -> dict:
    """Record a configuration error on ``items`` = [(pk, version), ...]: they stay
    pending, retried later, and it is not counted as an attempt."""
    for pk, version in items:
        transitions.record_failure(spec.model, pk, version=version, error=exc, permanent=False, configuration=True)
    logger.error("cannot moderate: %s", exc)
    return {"misconfigured": len(items)}


def _check_dimensions(spec: ModerationSpec, embedder) -> None:
    """Raise ``EmbedderConfigurationError`` (``wrong_dimensions``) when the embedder's
    vectors do not fit the model's vector columns as the database has them (a new
    width without its migration), before a DataError could escape the write.
    One catalog query per batch: a migration can change the width under a running cluster."""
    wrong = {name: width for name, width in vector_dimensions(spec.model).items() if width != embedder.dimensions}
    if wrong:
        columns = ", ".join(f"{spec.model._meta.db_table}.{name} is halfvec({width})" for name, width in wrong.items())
        raise EmbedderConfigurationError(
            f"{embedder.model_id} makes {embedder.dimensions}-dimension vectors, but {columns}. Migrate the "
            'columns to the embedder\'s width (docs/storage.md, "Changing the width"), or change '
            "MODERATION['EMBEDDER'] back.",
            code="wrong_dimensions",
        )


def _attempt(
    spec: ModerationSpec, objs: list, embedder, *, force: bool, outcome: Counter, ends: float | None, postponed: list
) -> list:
    """Count an attempt on ``objs``, decode their photos and score them with one
    embedder call; ``outcome`` gets the counts, ``postponed`` the objects whose call was
    not started. Returns the keys of the objects scored, or whose failure was recorded."""
    transitions.start_attempt(spec.model, objs)
    work = []
    for obj in objs:
        try:
            image = decode_listing_image(_read_image(spec, obj), embedder=embedder)
        except PermanentEmbedError as exc:
            transitions.record_failure(spec.model, obj.pk, version=obj.moderation_version, error=exc, permanent=True)
            outcome["error"] += 1
            continue
        work.append((obj, spec.text_of(obj), image))
    if work:
        outcome.update(_embed_and_record(spec, work, embedder, force=force, ends=ends, postponed=postponed))
    late = {obj.pk for obj in postponed}
    return [obj.pk for obj, _text, _image in work if obj.pk not in late]


def _read_image(spec: ModerationSpec, obj) -> bytes:
    field_file = getattr(obj, spec.image_field)
    if not field_file:
        raise PermanentEmbedError("The object has no photo.", code="image_missing")
    try:
        with field_file.open("rb") as handle:
            return handle.read()
    except OSError as exc:  # the file was deleted from storage, or storage is down
        raise PermanentEmbedError(f"The photo {field_file.name} cannot be read: {exc}.", code="image_missing") from exc


def _embed_and_record(
    spec: ModerationSpec, work: list, embedder, *, force: bool, ends: float | None, postponed: list
) -> Counter:
    """Embed and score ``work`` = [(object, text, image), ...], its attempt counted, and
    record the outcome. When the provider refuses the batch, each object is tried alone,
    while the budget lasts: the others give their attempt back into ``postponed``."""
    outcome: Counter = Counter()
    started, failed = time.perf_counter(), True
    try:
        text_vectors, image_vectors = embedder.embed(texts=[w[1] for w in work], images=[w[2] for w in work])
        failed = False
    except PermanentEmbedError as exc:
        if len(work) > 1:  # find the one input the provider refuses; score the others
            for index, item in enumerate(work):
                if not _fits(embedder, 1, ends):
                    late = [obj for obj, _text, _image in work[index:]]
                    transitions.give_back_attempt(spec.model, late)
                    postponed += late
                    break
                outcome.update(_embed_and_record(spec, [item], embedder, force=force, ends=ends, postponed=postponed))
            return outcome
        transitions.record_failure(
            spec.model, work[0][0].pk, version=work[0][0].moderation_version, error=exc, permanent=True
        )
        return Counter(error=1)
    except (TransientEmbedError, EmbedderConfigurationError) as exc:
        return _retry_later(spec, work, exc, configuration=isinstance(exc, EmbedderConfigurationError))
    finally:  # the embedder's account (moderation.usage), failed calls included
        usage.record(embedder, texts=len(work), images=len(work), seconds=time.perf_counter() - started, failed=failed)
    objs = [obj for obj, _text, _image in work]
    phashes = [duplicates.image_phash(image) for _obj, _text, image in work]
    labels = spec.category_labels()
    try:
        # Outside the transaction: the prompts are embedded once per model and categories.
        matrix = scoring.category_matrix(embedder, labels, spec.category_descriptions()) if len(labels) > 1 else None
        concepts = scoring.concept_matrix(embedder)
    except EmbedderError as exc:
        # No object is at fault: a refused prompt is a setting to fix (CATEGORY_PROMPTS,
        # PROHIBITED_CONCEPTS, a category's name), like a misconfigured embedder.
        return _retry_later(spec, work, exc, configuration=not isinstance(exc, TransientEmbedError))
    # Changed by the admin or moderation_calibrate in another process: read per batch.
    thresholds.reset()
    stored = thresholds.stored(spec.label)
    with transaction.atomic():
        db.relax_commit()
        # Another task scoring the same picture waits here until this one committed,
        # and then finds it among the duplicate candidates.
        claims.lock_pictures(spec, phashes)
        # Earlier uploads and later copies in one statement, before the write: the
        # searches leave the batch out, so its new vectors would change nothing.
        limits = [scoring.thresholds_for(spec.category_of(obj), stored=stored) for obj in objs]
        found = duplicates.duplicate_candidates(spec, objs, image_vectors, model_id=embedder.model_id, limits=limits)
        scores = scoring.score_batch(
            spec,
            objs,
            text_vectors=text_vectors,
            image_vectors=image_vectors,
            phashes=phashes,
            labels=labels,
            matrix=matrix,
            concepts=concepts,
            stored=stored,
            candidates=found.earlier,
            model_id=embedder.model_id,
        )
        results = [
            transitions.ScoredObject(obj.pk, obj.moderation_version, text_vector, image_vector, phash, object_scores)
            for obj, text_vector, image_vector, phash, object_scores in zip(
                objs, text_vectors, image_vectors, phashes, scores, strict=True
            )
        ]
        statuses = transitions.record_scores(spec.model, results, model_id=embedder.model_id, force=force)
        # A copy scored before its original found no earlier photo: score it again, now.
        copies = duplicates.later_copies(spec, objs, found.later, phashes, limits=limits)
        for copy in copies:
            transitions.rescan(copy)
        if copies:
            outcome["copies_rescanned"] = len(copies)
    outcome.update(str(status) if status else "current" for status in statuses)
    return outcome


def _retry_later(spec: ModerationSpec, work: list, exc: EmbedderError, *, configuration: bool) -> Counter:
    """Record an embedder failure on every object of ``work``: they stay pending for the sweeper."""
    logger.warning("embedding %d object(s) of %s failed: %s", len(work), spec.label, exc)
    for obj, _text, _image in work:
        transitions.record_failure(
            spec.model,
            obj.pk,
            version=obj.moderation_version,
            error=exc,
            permanent=False,
            configuration=configuration,
        )
    return Counter(retry=len(work))


def due_for_work(spec: ModerationSpec, *, now=None):
    """Objects a sweep re-queues: pending ones whose task seems lost, and retries that are
    due and not queued since (or whose task seems lost). An ``error`` without a retry time
    is permanent: only a content change, a rescan or ``moderation_scan`` bring it back."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=moderation_settings.STALE_AFTER_SECONDS)
    lost = Q(moderation_queued_at__isnull=True) | Q(moderation_queued_at__lt=stale)
    return spec.model._default_manager.filter(
        Q(moderation_status=S.PENDING, moderation_retry_at__isnull=True) & lost
        | Q(moderation_status__in=UNSCORED_STATUSES, moderation_retry_at__lte=now)
        & (lost | Q(moderation_queued_at__lt=F("moderation_retry_at")))
    )


def sweep() -> int:
    """Re-queue lost and due work in batches (a django-q2 schedule runs this every minute).

    A task can be lost: a Redis broker restarted, a worker killed before it acked.
    The object is still ``pending`` in the database, so the database is the truth.
    Its heartbeat tells ``moderation_health`` that the cluster still runs tasks.
    """
    health.beat()
    queued = 0
    now = timezone.now()
    for spec in specs():
        rows = list(due_for_work(spec, now=now).values_list("pk", "moderation_version")[:10_000])
        size = moderation_settings.BATCH_SIZE
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            # The retry time stays: the task checks that an error's retry is due.
            spec.model._default_manager.filter(pk__in=[pk for pk, _ in chunk]).update(moderation_queued_at=now)
            queue.enqueue_batch(spec.label, [(str(pk), version) for pk, version in chunk])
            queued += len(chunk)
    if queued:
        logger.info("sweep re-queued %d object(s)", queued)
    return queued


def ensure_sweep_schedule(**kwargs) -> None:
    """Create or update the django-q2 schedule of ``sweep`` (after migrate)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="moderation.sweep",
        defaults={
            "func": "moderation.tasks.sweep",
            "schedule_type": Schedule.MINUTES,
            "minutes": moderation_settings.SWEEP_EVERY_MINUTES,
            "repeats": -1,
        },
    )
