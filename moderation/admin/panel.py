"""The facts beside a decision on the review panel: a duplicate's two sides (who
uploaded first) and the seller's record. Plain data for the template."""

from __future__ import annotations

from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.db.models import CharField, Count, Model
from django.db.models.functions import Cast
from django.urls import NoReverseMatch, reverse

from moderation.models import REVIEW_STATUSES, Decision, ModeratedQuerySet, ModerationStatus
from moderation.registry import get_spec

# The seller's record lists at most this many of their other objects.
RECORD_SIZE = 10


def admin_url_of(content_type: ContentType, pk) -> str | None:
    """The change page of the object ``pk`` of ``content_type`` on the default admin
    site, if it has one (the object itself is not loaded)."""
    try:
        return reverse(f"admin:{content_type.app_label}_{content_type.model}_change", args=[quote(pk)])
    except NoReverseMatch:
        return None


def admin_url(obj: Model | None) -> str | None:
    """The admin change page of ``obj``, if the default admin site has one."""
    return None if obj is None else admin_url_of(ContentType.objects.get_for_model(obj), obj.pk)


def duplicate_sides(obj: Model, other: Model) -> dict:
    """Both sides of a duplicate photo: each object, its owner, when it was first saved
    (``created_field``; None for a model without one), and which came first, in the
    duplicate check's own order (``ModerationSpec.upload_order``): the earliest upload
    is the original, whatever either side's later edits."""
    spec = get_spec(type(obj))
    sides = [
        {
            "object": item,
            "owner": getattr(item, spec.owner_field) if spec.owner_field else None,
            "uploaded_at": getattr(item, spec.created_field) if spec.created_field else None,
        }
        for item in (obj, other)
    ]
    first = sides[0] if spec.upload_order(obj) <= spec.upload_order(other) else sides[1]
    return {"sides": sides, "first": first, "other": other, "other_url": admin_url(other)}


def owner_record(obj: Model) -> dict | None:
    """The owner's other objects that needed a person or were rejected, newest first
    (``RECORD_SIZE`` at most), their total, and how many decisions people made on
    the owner's objects. None for a model without an owner or an object without one."""
    spec = get_spec(type(obj))
    owner = spec.owner_id_of(obj) if spec.owner_field else None
    if owner is None:
        return None
    owned: ModeratedQuerySet = type(obj)._default_manager.filter(**{spec.owner_field: owner})
    troubled = owned.exclude(pk=obj.pk).filter(moderation_status__in=[*REVIEW_STATUSES, ModerationStatus.REJECTED])
    by_status = dict(troubled.order_by().values_list("moderation_status").annotate(n=Count("pk")))
    decisions = Decision.objects.filter(
        content_type=ContentType.objects.get_for_model(obj),
        object_pk__in=owned.annotate(key=Cast("pk", CharField())).values("key"),
        actor__isnull=False,
    ).count()
    return {
        "objects": [(item, admin_url(item)) for item in troubled.order_by("-pk")[:RECORD_SIZE]],
        "by_status": [(ModerationStatus(status).label, n) for status, n in sorted(by_status.items())],
        "decisions": decisions,
    }
