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

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import claims, db, duplicates, queue, scoring, transitions, usage
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


def moderate_object(label: str, pk: str, version: int, force: bool = False) -> dict:
    return moderate_batch(label, [(pk, version)], force)


def moderate_batch(label: str, items: list, force: bool = False) -> dict:
    """Score the objects ``items`` = [(pk, version), ...] of one model with one embedder call.

    With ``COALESCE`` on, the task first claims its objects (one held by another task
    is left to it: ``claimed``) and up to ``BATCH_SIZE`` in all with other pending
    objects waiting for their own tasks (``coalesced``), scored in the same call; see
    ``moderation.claims``. Returns counts by outcome, for django-q2's failure records
    and the logs.
    """
    spec = get_spec(label)
    try:
        embedder = get_embedder()
    except EmbedderConfigurationError as exc:
        return _misconfigured(spec, items, exc)
    # Keys as the database writes them, so that a claim's lock key matches.
    wanted = {str(spec.model._meta.pk.to_python(pk)): version for pk, version in items}
    if not moderation_settings.COALESCE:
        return _moderate(spec, wanted, [], embedder, force=force, claimed=False)[0]
    extra = 0 if force else max(0, moderation_settings.BATCH_SIZE - len(wanted))
    with claims.claim(spec, list(wanted), extra=extra) as (own, others):
        outcome, scored = _moderate(spec, {pk: wanted[pk] for pk in own}, others, embedder, force=force, claimed=True)
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
    return outcome


def _moderate(spec: ModerationSpec, wanted: dict, others: list, embedder, *, force: bool, claimed: bool):
    """Score ``wanted`` = {pk: version} if still due, and the ``others`` still pending.

    With the objects ``claimed``, one whose version moved on since the task was queued
    is scored in its current version (the newer version's task may have found it
    claimed). Each attempt is counted before the work starts. An object whose last
    attempt has no outcome killed its worker, or shared a batch with one that did: it
    is tried alone, as is one a crash would leave without attempts, so that a crash
    is never charged to the others of a batch twice; once its attempts reach
    ``MAX_ATTEMPTS`` it goes to ``error`` with ``worker_crashed``. Returns the counts by
    outcome and the keys of the objects scored.
    """
    outcome: Counter = Counter()
    # The old vectors are not needed to compute new ones.
    queryset = spec.model._default_manager.filter(pk__in=[*wanted, *others]).defer(*VECTOR_FIELDS)
    if spec.category_field and spec.model._meta.get_field(spec.category_field).is_relation:
        queryset = queryset.select_related(spec.category_field)
    rows = {str(obj.pk): obj for obj in queryset}
    model_id = embedder.model_id
    due, along = [], []
    for pk, version in wanted.items():
        obj = rows.get(pk)
        if obj is None or obj.moderation_version != version:
            outcome["superseded"] += 1
            if claimed and obj is not None and obj.moderation_status == S.PENDING:
                along.append(obj)
        elif not force and obj.moderation_status not in UNSCORED_STATUSES and obj.embedding_model == model_id:
            outcome["current"] += 1
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
            return dict(outcome), []
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
    scored = []
    for objs in [together, *alone] if together else alone:
        scored += _attempt(spec, objs, embedder, force=force, outcome=outcome)
    return dict(outcome), scored


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


def _attempt(spec: ModerationSpec, objs: list, embedder, *, force: bool, outcome: Counter) -> list:
    """Count an attempt on ``objs``, decode their photos and score them with one
    embedder call; ``outcome`` gets the counts. Returns the keys sent to the embedder."""
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
        outcome.update(_embed_and_record(spec, work, embedder, force=force))
    return [obj.pk for obj, _text, _image in work]


def _read_image(spec: ModerationSpec, obj) -> bytes:
    field_file = getattr(obj, spec.image_field)
    if not field_file:
        raise PermanentEmbedError("The object has no photo.", code="image_missing")
    try:
        with field_file.open("rb") as handle:
            return handle.read()
    except OSError as exc:  # the file was deleted from storage, or storage is down
        raise PermanentEmbedError(f"The photo {field_file.name} cannot be read: {exc}.", code="image_missing") from exc


def _embed_and_record(spec: ModerationSpec, work: list, embedder, *, force: bool) -> Counter:
    outcome: Counter = Counter()
    started, failed = time.perf_counter(), True
    try:
        text_vectors, image_vectors = embedder.embed(texts=[w[1] for w in work], images=[w[2] for w in work])
        failed = False
    except PermanentEmbedError as exc:
        if len(work) > 1:  # find the one input the provider refuses; score the others
            for item in work:
                outcome.update(_embed_and_record(spec, [item], embedder, force=force))
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
        # Outside the transaction: the categories' prompts are embedded once per model.
        matrix = scoring.category_matrix(embedder, labels) if len(labels) > 1 else None
    except EmbedderError as exc:
        # No object is at fault: a refused prompt is a setting to fix (CATEGORY_PROMPT,
        # a category's name), like a misconfigured embedder.
        return _retry_later(spec, work, exc, configuration=not isinstance(exc, TransientEmbedError))
    with transaction.atomic():
        db.relax_commit()
        # Another task scoring the same picture waits here until this one committed,
        # and then finds it among the duplicate candidates.
        claims.lock_pictures(spec, phashes)
        scores = scoring.score_batch(
            spec,
            objs,
            text_vectors=text_vectors,
            image_vectors=image_vectors,
            phashes=phashes,
            labels=labels,
            matrix=matrix,
            candidates=duplicates.duplicate_candidates(spec, objs, image_vectors, model_id=embedder.model_id),
            model_id=embedder.model_id,
        )
        results = [
            transitions.ScoredObject(obj.pk, obj.moderation_version, text_vector, image_vector, phash, object_scores)
            for obj, text_vector, image_vector, phash, object_scores in zip(
                objs, text_vectors, image_vectors, phashes, scores, strict=True
            )
        ]
        statuses = transitions.record_scores(spec.model, results, model_id=embedder.model_id, force=force)
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
    """Objects a sweep re-queues: pending ones whose task seems lost, and retries that are due."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=moderation_settings.STALE_AFTER_SECONDS)
    return spec.model._default_manager.filter(
        Q(moderation_status=S.PENDING, moderation_retry_at__isnull=True)
        & (Q(moderation_queued_at__isnull=True) | Q(moderation_queued_at__lt=stale))
        | Q(moderation_status__in=UNSCORED_STATUSES, moderation_retry_at__lte=now)
    )


def sweep() -> int:
    """Re-queue lost and due work in batches (a django-q2 schedule runs this every minute).

    A task can be lost: a Redis broker restarted, a worker killed before it acked.
    The object is still ``pending`` in the database, so the database is the truth.
    """
    queued = 0
    now = timezone.now()
    for spec in specs():
        rows = list(due_for_work(spec, now=now).values_list("pk", "moderation_version")[:10_000])
        size = moderation_settings.BATCH_SIZE
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            spec.model._default_manager.filter(pk__in=[pk for pk, _ in chunk]).update(
                moderation_queued_at=now, moderation_retry_at=None
            )
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
