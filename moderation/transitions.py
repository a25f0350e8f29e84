"""Every change of ``moderation_status``: small guarded functions, each atomic, each audited.

Whoever asks (the signal handler on save, the tasks, the admin, the API), a state
changes here and nowhere else. Each function locks the row, checks the current state,
writes the change and a ``Decision`` row in one transaction, queues a scoring task
on commit where the change needs one, and sends the host's signals
(``moderation.signals``) on commit.

    pending -> ok | flagged -> approved | rejected;  error (with a code)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from . import drains, queue, signals
from .conf import moderation_settings
from .db import update_rows
from .duplicates import same_picture
from .exceptions import InvalidTransition
from .models import (
    DECIDED_STATUSES,
    UNSCORED_STATUSES,
    VECTOR_FIELDS,
    Decision,
    FlagReason,
    ModerationStatus,
    RejectedPhoto,
)
from .registry import get_spec
from .scoring import Scores, thresholds_for, with_severity
from .thresholds import stored as stored_thresholds
from .vectors import to_db

S = ModerationStatus

SCORE_FIELDS = [
    "embedding_model",
    "text_vector",
    "image_vector",
    "image_phash",
    "consistency_score",
    "category_rank",
    "category_score",
    "suggested_categories",
    "duplicate_of",
    "duplicate_similarity",
    "prohibited_items",
    "moderation_thresholds",
    "flag_reasons",
    "severity",
    "moderated_at",
]


def _decision(obj, **change) -> Decision:
    decision = _decision_row(obj, **change)
    decision.save()
    return decision


def _decision_row(
    obj, *, from_status: str, to_status: str, actor=None, reason: str = "", with_scores: bool = False
) -> Decision:
    """An unsaved Decision for a state change of ``obj``. ``with_scores``: it keeps the
    object's scores (``Scores.as_dict()``'s keys, from the object's own fields)."""
    return Decision(
        content_type=ContentType.objects.get_for_model(obj),
        object_pk=str(obj.pk),
        actor=actor,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        flag_reasons=list(obj.flag_reasons),
        scores=Scores.stored_on(obj).as_dict() if with_scores else {},
        content_version=obj.moderation_version,
    )


def _send_on_commit(signal, obj: models.Model, **kwargs) -> None:
    """Send ``signal`` for ``obj`` once the transaction commits (never for a change rolled
    back). ``send_robust``: a receiver's error is logged by Django (``django.dispatch``),
    not raised into a task or a moderator's request whose change is already committed.

    The sender is the concrete model, whichever proxy of it ``obj`` was loaded through
    (the admin's review queue is one): a receiver connected with ``sender=Listing`` hears
    of every decision on a listing."""
    sender = obj._meta.concrete_model
    transaction.on_commit(lambda: signal.send_robust(sender=sender, instance=obj, **kwargs))


def _rows_for_update(model: type[models.Model]):
    """Rows locked until the transaction ends. No state change reads the vectors, and
    parsing two 512-float columns per row is the costly part of loading one."""
    return model._default_manager.select_for_update().defer(*VECTOR_FIELDS)


def _locked(model: type[models.Model], pk) -> models.Model | None:
    return _rows_for_update(model).filter(pk=pk).first()


def content_changed(obj: models.Model, *, new_hash: str, created: bool) -> bool:
    """The seller saved new text or a new photo: back to ``pending``, queue a scoring task
    on commit: a drain of its model when ``moderation.drains`` is enabled and none is
    queued yet, its own ``moderate_object`` task otherwise.

    Returns False when the stored hash already matches (nothing to do). The history
    stays; a decision on the old content no longer holds for the new.
    """
    spec = get_spec(type(obj))
    with transaction.atomic():
        row = _locked(type(obj), obj.pk)
        if row is None or row.content_hash == new_hash:
            return False
        from_status = "" if created else row.moderation_status
        if from_status == S.REJECTED:  # its rejected photo may be on its way out
            remember_rejected_photo(spec.model, row.pk)
        row.content_hash = new_hash
        row.moderation_version = F("moderation_version") + 1
        row.moderation_status = S.PENDING
        row.moderation_attempts = 0
        row.moderation_started_at = None
        row.moderation_error = ""
        row.moderation_error_detail = ""
        row.moderation_retry_at = None
        row.moderation_queued_at = timezone.now()
        row.save(
            update_fields=[
                "content_hash",
                "moderation_version",
                "moderation_status",
                "moderation_attempts",
                "moderation_started_at",
                "moderation_error",
                "moderation_error_detail",
                "moderation_retry_at",
                "moderation_queued_at",
            ]
        )
        row.refresh_from_db(fields=["moderation_version"])
        _decision(row, from_status=from_status, to_status=S.PENDING, reason="created" if created else "content changed")
        if drains.enabled():  # the save path: one drain for the saves that queue up
            drains.request_on_commit(spec.label)
        else:
            queue.enqueue_on_commit(spec.label, row.pk, row.moderation_version)
    for name in ("content_hash", "moderation_version", "moderation_status", "moderation_queued_at"):
        setattr(obj, name, getattr(row, name))
    return True


@dataclass
class ScoredObject:
    """A task's result for one object: what it scored (``version``) and what came out."""

    pk: Any
    version: int
    text_vector: Any
    image_vector: Any
    phash: int | None
    scores: Scores


def record_scores(
    model: type[models.Model], results: list[ScoredObject], *, model_id: str, force: bool = False
) -> list[str | None]:
    """Write tasks' results whose content is still current, in one transaction.

    Returns each object's new status, or None when its result was stale or already
    written (a task run twice writes once). A moderator's decision on unchanged content
    is kept: only the vectors and scores are refreshed. The rows are locked together,
    written with one UPDATE and their decisions with one INSERT.
    """
    fields = [
        *SCORE_FIELDS,
        "moderation_status",
        "moderation_error",
        "moderation_error_detail",
        "moderation_attempts",
        "moderation_started_at",
        "moderation_retry_at",
    ]
    statuses: list[str | None] = []
    with transaction.atomic():
        rows = _rows_for_update(model).in_bulk([result.pk for result in results])
        undecided = [row.pk for row in rows.values() if row.moderation_status not in DECIDED_STATUSES]
        rejected = rejected_last(model, undecided)
        changed, decisions, now = [], [], timezone.now()
        for result in results:
            row = rows.get(result.pk)
            if row is None or row.moderation_version != result.version:
                statuses.append(None)
                continue
            up_to_date = row.moderation_status not in UNSCORED_STATUSES and row.embedding_model == model_id
            if up_to_date and not force:
                statuses.append(None)
                continue
            scores, from_status = result.scores, row.moderation_status
            if str(row.pk) in rejected and FlagReason.RESUBMITTED not in scores.flag_reasons:
                # New content after a rejection goes to a person.
                scores = with_severity(replace(scores, flag_reasons=[*scores.flag_reasons, FlagReason.RESUBMITTED]))
            row.embedding_model = model_id
            row.text_vector = to_db(result.text_vector)
            row.image_vector = to_db(result.image_vector)
            row.image_phash = result.phash
            row.consistency_score = scores.consistency
            row.category_rank = scores.category_rank
            row.category_score = scores.category_score
            row.suggested_categories = scores.suggested_categories
            row.moderation_thresholds = scores.thresholds
            row.duplicate_of = scores.duplicate_of
            row.duplicate_similarity = scores.duplicate_similarity
            row.prohibited_items = scores.prohibited_items
            row.flag_reasons = scores.flag_reasons
            row.severity = scores.severity
            row.moderated_at = now
            row.moderation_error, row.moderation_error_detail = "", ""
            row.moderation_attempts, row.moderation_started_at, row.moderation_retry_at = 0, None, None
            if from_status not in DECIDED_STATUSES:
                row.moderation_status = S.FLAGGED if scores.flag_reasons else S.OK
            changed.append(row)
            if row.moderation_status == S.FLAGGED and from_status != S.FLAGGED:
                _send_on_commit(signals.object_flagged, row, reasons=list(row.flag_reasons))
            if row.moderation_status != from_status:
                decisions.append(
                    _decision_row(
                        row, from_status=from_status, to_status=row.moderation_status, reason="scored", with_scores=True
                    )
                )
            statuses.append(row.moderation_status)
        update_rows(model, changed, fields)
        Decision.objects.bulk_create(decisions)
    return statuses


def remember_rejected_photo(model: type[models.Model], pk, *, standing: bool = False) -> RejectedPhoto | None:
    """Keep the photo of the object ``pk`` as a ``RejectedPhoto`` if the object stands
    rejected with a scored photo: the photo is about to leave it (the object is deleted,
    or its seller changes it), and its owner listing it again must still go to a
    moderator; an approval of the object with that photo forgets it again (``_decide``).
    In the caller's transaction (``content_changed``; the ``pre_delete`` of
    ``signal_handlers``). ``standing``: the caller knows the moderators' last word on the
    object is a rejection whatever its status (``undo`` of a later approval). None when
    there is nothing to keep (not rejected, never scored, a model without ``owner_field``)."""
    spec = get_spec(model)
    owner = spec.owner_attname
    if owner is None:
        return None
    rows = spec.model._base_manager.filter(pk=pk, image_vector__isnull=False)
    if not standing:
        rows = rows.filter(moderation_status=S.REJECTED)
    row = rows.values(owner, "embedding_model", "image_vector", "image_phash").first()
    if row is None or row[owner] is None:
        return None
    return RejectedPhoto.objects.create(
        content_type=ContentType.objects.get_for_model(spec.model),
        object_pk=str(pk),
        owner=str(row[owner]),
        embedding_model=row["embedding_model"],
        image_vector=row["image_vector"],
        image_phash=row["image_phash"],
    )


def rejected_last(model: type[models.Model], pks: list) -> set[str]:
    """The keys (as ``Decision.object_pk`` strings) among ``pks`` whose moderators' last
    word is a rejection: their approvals and rejections in order, each undo taking back
    the decision before it, end with a rejection (an approval made by mistake and undone
    leaves the rejection before it standing). An edit sends such an object back to
    ``pending`` like any other (``content_changed``); ``record_scores`` then flags the
    new content ``resubmitted``, so that it goes back to a person instead of to public
    search, whatever its scores. One query for the batch (the index on content type, key
    and time); an object has a handful of such decisions."""
    if not pks:
        return set()
    content_type = ContentType.objects.get_for_model(model)
    decisions = (
        Decision.objects.filter(content_type=content_type, object_pk__in=[str(pk) for pk in pks])
        .filter(Q(to_status__in=DECIDED_STATUSES) | Q(reason="undo"))
        .order_by("created_at", "pk")
        .values_list("object_pk", "to_status", "reason")
    )
    standing: dict[str, list[str]] = {}
    for pk, to_status, reason in decisions:
        verdicts = standing.setdefault(pk, [])
        if reason == "undo":
            if verdicts:
                verdicts.pop()
        else:
            verdicts.append(to_status)
    return {pk for pk, verdicts in standing.items() if verdicts and verdicts[-1] == S.REJECTED}


def start_attempt(model: type[models.Model], objs: list[models.Model]) -> None:
    """Count an attempt on each of ``objs`` before a task decodes or embeds them.

    One UPDATE, committed before the work starts, so that a worker killed during the
    attempt (a photo that crashes the decoder, a model out of memory) has still spent
    it: the next task finds ``moderation_started_at`` set and, after ``MAX_ATTEMPTS``,
    records ``worker_crashed`` (``moderation.tasks``). It writes two columns that no
    index covers and leaves the status alone, so PostgreSQL can make it a HOT update
    that does not re-insert the row into the HNSW indexes (docs/pipeline.md). A row
    whose version moved on since it was loaded is not counted.
    """
    model._default_manager.filter(_as_loaded(objs)).update(
        moderation_attempts=F("moderation_attempts") + 1, moderation_started_at=timezone.now()
    )


def give_back_attempt(model: type[models.Model], objs: list[models.Model]) -> None:
    """Undo ``start_attempt`` on ``objs`` whose embedder call a task did not start after
    all (its time budget ran out: ``moderation.tasks``). They are not charged, and no
    outcome is recorded: the task queues them again. One UPDATE, like ``start_attempt``."""
    model._default_manager.filter(_as_loaded(objs), moderation_started_at__isnull=False).update(
        moderation_attempts=F("moderation_attempts") - 1, moderation_started_at=None
    )


def _as_loaded(objs: list[models.Model]) -> Q:
    """The rows of ``objs`` still in the version they were loaded in."""
    versions = Q()
    for obj in objs:
        versions |= Q(pk=obj.pk, moderation_version=obj.moderation_version)
    return versions


def record_failure(
    model: type[models.Model], pk, *, version: int, error, permanent: bool, configuration: bool = False
) -> str | None:
    """A task could not score the object.

    Permanent: ``error`` now, not retried until the content changes or a moderator
    rescans. Transient: stays ``pending`` and the sweeper retries it after a growing
    delay (the provider's ``retry_after`` when longer), up to ``MAX_ATTEMPTS``, then
    ``error``, retried again after ``ERROR_RETRY_DELAY_SECONDS``. An attempt that
    ``start_attempt`` counted is not counted again; a configuration error gives it
    back, since nothing is wrong with the object. A Decision is written when the
    status, or the code of an ``error``, changes. A rescan of scored content that fails:
    ``_rescan_failed``.
    """
    conf = moderation_settings
    now = timezone.now()
    with transaction.atomic():
        row = _locked(model, pk)
        if row is None or row.moderation_version != version:
            return None
        if row.moderation_status not in UNSCORED_STATUSES:
            return _rescan_failed(row, error, permanent=permanent)
        from_status, from_error = row.moderation_status, row.moderation_error
        counted = row.moderation_started_at is not None
        if configuration and counted:
            row.moderation_attempts = max(0, row.moderation_attempts - 1)
        elif not configuration and not counted:
            row.moderation_attempts += 1
        row.moderation_started_at = None
        row.moderation_error = getattr(error, "code", "") or type(error).__name__
        row.moderation_error_detail = str(error)[:2000]
        if permanent:
            row.moderation_status, row.moderation_retry_at = S.ERROR, None
        elif configuration:
            row.moderation_retry_at = now + timedelta(seconds=conf.RETRY_MAX_DELAY_SECONDS)
        elif row.moderation_attempts >= conf.MAX_ATTEMPTS:
            row.moderation_status = S.ERROR
            row.moderation_retry_at = now + timedelta(seconds=conf.ERROR_RETRY_DELAY_SECONDS)
        else:
            delay = min(
                conf.RETRY_MAX_DELAY_SECONDS, conf.RETRY_BASE_DELAY_SECONDS * 2 ** (row.moderation_attempts - 1)
            )
            delay = max(delay, getattr(error, "retry_after", None) or 0)
            row.moderation_retry_at = now + timedelta(seconds=delay)
        row.save(
            update_fields=[
                "moderation_status",
                "moderation_attempts",
                "moderation_started_at",
                "moderation_error",
                "moderation_error_detail",
                "moderation_retry_at",
            ]
        )
        if row.moderation_status != from_status or (
            row.moderation_status == S.ERROR and row.moderation_error != from_error
        ):
            _decision(row, from_status=from_status, to_status=row.moderation_status, reason=row.moderation_error_detail)
            if row.moderation_status == S.ERROR:
                _send_on_commit(
                    signals.object_failed, row, code=row.moderation_error, detail=row.moderation_error_detail
                )
        return row.moderation_status


def _rescan_failed(row: models.Model, error, *, permanent: bool) -> str:
    """``record_failure`` for a rescan of scored content (``ok``, ``flagged``, ``approved``,
    ``rejected``), inside its transaction: the attempt ends (nothing is left in flight or
    queued, which the sweeper and ``manage.py demo`` would wait on for ever) and the code is
    kept on the row for the review panel. A permanent failure of a listing no moderator
    decided makes it ``error``, as for new content: its scores were the photo's it can no
    longer read. A decided one keeps its decision, and a transient failure keeps the
    status and the earlier scores; neither is retried until someone rescans."""
    from_status = row.moderation_status
    row.moderation_error = getattr(error, "code", "") or type(error).__name__
    row.moderation_error_detail = str(error)[:2000]
    row.moderation_started_at, row.moderation_retry_at, row.moderation_queued_at = None, None, None
    if permanent and from_status not in DECIDED_STATUSES:
        row.moderation_status = S.ERROR
    row.save(
        update_fields=[
            "moderation_status",
            "moderation_started_at",
            "moderation_error",
            "moderation_error_detail",
            "moderation_retry_at",
            "moderation_queued_at",
        ]
    )
    if row.moderation_status == S.ERROR:
        _decision(row, from_status=from_status, to_status=S.ERROR, reason=row.moderation_error_detail)
        _send_on_commit(signals.object_failed, row, code=row.moderation_error, detail=row.moderation_error_detail)
    return row.moderation_status


def _decide(
    obj: models.Model,
    *,
    to_status: str,
    actor,
    reason: str,
    shown: tuple[str, int] | None = None,
    version: int | None = None,
) -> models.Model:
    """A moderator's decision: ``to_status`` from any other status. ``shown``: the
    (status, content version) the moderator saw; ``version``: the content version alone
    (the API's); a row that moved on since is refused. An approval that names neither is
    refused for a ``pending`` object: its content changed since anyone saw it (a seller's
    edit between a moderator's GET and POST)."""
    with transaction.atomic():
        row = _locked(type(obj), obj.pk)
        if row is None:
            raise InvalidTransition(f"{obj} no longer exists.")
        if shown is not None and shown != (row.moderation_status, row.moderation_version):
            raise InvalidTransition(_changed_since(row, shown_version=shown[1]))
        if version is not None and version != row.moderation_version:
            raise InvalidTransition(_changed_since(row, shown_version=version))
        if to_status == S.APPROVED and shown is None and version is None and row.moderation_status == S.PENDING:
            raise InvalidTransition(
                _(
                    "%(object)s is pending: its content changed and is being scored again, and no one has seen it. "
                    "Approve it once it is scored, or name the version you saw."
                )
                % {"object": row}
            )
        if row.moderation_status == to_status:
            raise InvalidTransition(
                f"{row} is {row.get_moderation_status_display().lower()}; it cannot become {to_status}."
            )
        from_status = row.moderation_status
        row.moderation_status = to_status
        row.save(update_fields=["moderation_status"])
        if to_status == S.APPROVED:  # its photo, kept when it stood rejected, is accepted now
            RejectedPhoto.objects.filter(
                content_type=ContentType.objects.get_for_model(row),
                object_pk=str(row.pk),
                image_phash=row.image_phash,
            ).delete()
        if to_status == S.REJECTED:
            _rescan_copies(row)
        decision = _decision(
            row, from_status=from_status, to_status=to_status, actor=actor, reason=reason, with_scores=True
        )
        _send_on_commit(signals.object_decided, row, status=to_status, reason=reason, actor=actor, decision=decision)
    obj.moderation_status = to_status
    return row


def _rescan_copies(row: models.Model) -> None:
    """The owner's public, undecided (``ok``) objects showing the picture of ``row``, which a
    moderator is rejecting, are scored again: the rejected picture makes them
    ``resubmitted`` (a user trial listed a copy before the rejection, and it stayed
    public). By the perceptual hash, within the category's ``PHASH_MAX_DISTANCE``; an
    approved copy keeps its moderator's decision."""
    spec = get_spec(type(row))
    if not spec.owner_field or row.image_phash is None:
        return
    limits = thresholds_for(spec.category_of(row), stored=stored_thresholds(spec.label))
    copies = (
        spec.model._default_manager.filter(**{spec.owner_attname: spec.owner_id_of(row)}, moderation_status=S.OK)
        .exclude(pk=row.pk)
        .exclude(image_phash=None)
        .values_list("pk", "image_phash")
    )
    for pk, phash in copies:
        if same_picture(phash, row.image_phash, limits["PHASH_MAX_DISTANCE"]):
            rescan(spec.model(pk=pk))


def _changed_since(row: models.Model, *, shown_version: int | None = None) -> str:
    """Why a decision on a page of ``row`` that is out of date is refused: who made its
    last change, to what, and when; or, when its content changed since the page showed
    ``shown_version``, that it was edited (its scoring since is the system's)."""
    if shown_version is not None and shown_version != row.moderation_version:
        text = _(
            "%(object)s was edited by its owner after the page was opened (version %(shown)s, now %(now)s): "
            "nothing was decided. The page now shows it as it is."
        )
        return text % {"object": row, "shown": shown_version, "now": row.moderation_version}
    last = history(row).select_related("actor").first()
    text = _(
        "%(object)s was %(status)s by %(actor)s at %(when)s, after the page was opened: nothing was decided. "
        "The page now shows it as it is."
    )
    return text % {
        "object": row,
        "status": row.get_moderation_status_display().lower(),
        "actor": last.actor if last and last.actor else _("the system"),
        "when": date_format(timezone.localtime(last.created_at), "DATETIME_FORMAT") if last else "-",
    }


def approve(
    obj: models.Model, *, actor, reason: str = "", shown: tuple[str, int] | None = None, version: int | None = None
) -> models.Model:
    """A moderator accepts the object as it is. Raises ``InvalidTransition`` if it is
    approved already, changed since the moderator saw it as ``shown`` or ``version``, or
    is ``pending`` and neither is named (``_decide``)."""
    return _decide(obj, to_status=S.APPROVED, actor=actor, reason=reason, shown=shown, version=version)


def decision_reason(preset: str, details: str) -> str:
    """The reason a decision records and the seller is told: one of ``DECISION_REASONS``
    (``preset``), the moderator's words, or both as "preset: details"; "" for neither.
    The admin's form and the API's compose it here, so both say it the same way."""
    return ": ".join(part for part in (preset, details.strip()) if part)


def reject(
    obj: models.Model, *, actor, reason: str, shown: tuple[str, int] | None = None, version: int | None = None
) -> models.Model:
    """A moderator refuses the object; it leaves public search. ``reason`` is what the
    seller is told (``DECISION_REASONS``, or the moderator's words). Raises ValueError
    for a blank reason (the admin's and the API's forms refuse it first) and
    ``InvalidTransition`` if the object is rejected already or changed since ``shown`` or
    ``version``."""
    if not reason.strip():
        raise ValueError("A rejection needs a reason: one of MODERATION['DECISION_REASONS'] or the moderator's words.")
    return _decide(obj, to_status=S.REJECTED, actor=actor, reason=reason, shown=shown, version=version)


def rescan(obj: models.Model, *, actor=None) -> None:
    """Score the object again now. An ``error`` object goes back to ``pending``; a
    decided one keeps its decision, and only its scores are refreshed."""
    spec = get_spec(type(obj))
    with transaction.atomic():
        row = _locked(type(obj), obj.pk)
        if row is None:
            raise InvalidTransition(f"{obj} no longer exists.")
        if row.moderation_status == S.ERROR:
            row.moderation_status = S.PENDING
            row.moderation_retry_at = None
            _decision(row, from_status=S.ERROR, to_status=S.PENDING, actor=actor, reason="rescan")
        # A fresh start, also for a decided object whose rescans crashed the worker.
        row.moderation_attempts, row.moderation_started_at = 0, None
        row.moderation_queued_at = timezone.now()
        row.save(
            update_fields=[
                "moderation_status",
                "moderation_attempts",
                "moderation_started_at",
                "moderation_retry_at",
                "moderation_queued_at",
            ]
        )
        queue.enqueue_on_commit(spec.label, row.pk, row.moderation_version, force=True)


def undo(obj: models.Model, *, actor, within_seconds: float) -> models.Model:
    """Take back ``actor``'s approval or rejection of ``obj``, made less than
    ``within_seconds`` ago: the object returns to the status it had, and the undo is a
    ``Decision`` of its own. Raises ``InvalidTransition`` saying why not: someone else
    decided since, the content changed since, the decision is older, or the object's
    last change is no decision of ``actor``'s."""
    with transaction.atomic():
        row = _locked(type(obj), obj.pk)
        if row is None:
            raise InvalidTransition(f"{obj} no longer exists.")
        last = history(row).select_related("actor").first()
        why = _undo_refusal(row, last, actor=actor, within_seconds=within_seconds)
        if why:
            raise InvalidTransition(_("%(object)s was not undone: %(why)s.") % {"object": row, "why": why})
        row.moderation_status = last.from_status
        row.save(update_fields=["moderation_status"])
        _decision(row, from_status=last.to_status, to_status=last.from_status, actor=actor, reason="undo")
        if last.to_status == S.APPROVED and str(row.pk) in rejected_last(type(row), [row.pk]):
            # The approval had forgotten the photo it accepted (``_decide``): the rejection
            # before it stands again, and so does its photo (a user trial relisted it).
            remember_rejected_photo(type(row), row.pk, standing=True)
    obj.moderation_status = row.moderation_status
    return row


def _undo_refusal(row: models.Model, last: Decision | None, *, actor, within_seconds: float) -> str:
    """Why ``actor`` may not undo ``row``'s ``last`` decision, in words; "" when they may."""
    if last is not None and last.actor_id is None:
        return _("its content changed after your decision")  # the seller's edit, or a scoring error
    if last is not None and last.actor_id != actor.pk:
        return _("%(actor)s %(status)s it after your decision") % {
            "actor": last.actor,
            "status": S(last.to_status).label.lower(),
        }
    if last is None or last.to_status not in DECIDED_STATUSES or last.to_status != row.moderation_status:
        return _("its last change is no decision of yours")
    if last.created_at < timezone.now() - timedelta(seconds=within_seconds):
        return _("your decision is older than %(seconds)d seconds") % {"seconds": within_seconds}
    return ""


def decide(
    obj: models.Model,
    verb: str,
    *,
    actor,
    reason: str = "",
    shown: tuple[str, int] | None = None,
    version: int | None = None,
):
    """A moderator's ``verb`` ("approve", "reject" or "rescan") on ``obj``: what the admin
    and the API call, so both follow the same rules. ``shown``: the (status, content
    version) the moderator decided on (the admin's page); ``version``: the content version
    alone (the API's); None for both to decide on the object as it is now (a rescan
    always is), which an approval of a ``pending`` object refuses. Raises
    ``InvalidTransition``."""
    if verb == "rescan":
        return rescan(obj, actor=actor)
    if verb == "approve":
        return approve(obj, actor=actor, reason=reason, shown=shown, version=version)
    if verb == "reject":
        return reject(obj, actor=actor, reason=reason, shown=shown, version=version)
    raise ValueError(f"Unknown moderation verb {verb!r}: use approve, reject or rescan.")


def history(obj: models.Model):
    """The object's decisions, newest first."""
    return Decision.objects.filter(content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk))
