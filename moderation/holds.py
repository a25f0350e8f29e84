"""Moderator holds: who is looking at an object in the review queue right now.

A moderator who opens an object holds it for ``HOLD_SECONDS``; another moderator sees
who holds it, and the review flow's "next" skips it. A moderator holds one object of a
model at a time. The hold ends when its holder steps on (``release``, or opening
another object by any way: the list, a link, the back button), when anyone decides on
the object (``release_all``: there is
nothing left to keep others off), or when it times out: a hold is never in anyone's
way for longer, even when its holder closed the tab. Holds are advice to people, not locks: a decision
on a held object is still allowed (and audited).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection, models
from django.db.models import CharField, OuterRef, Subquery
from django.db.models.functions import Cast, Now
from django.utils import timezone

from .conf import moderation_settings
from .models import ReviewHold


def hold(obj: models.Model, user, *, now=None) -> ReviewHold:
    """Take or renew ``user``'s hold on ``obj`` unless another moderator holds it, and end
    ``user``'s holds on other objects of its model: a moderator who opened another
    listing from the list (or went back and opened one) has stepped on from the last.

    Returns the hold in force afterwards: ``user``'s own (until now + ``HOLD_SECONDS``),
    or the other moderator's, untouched. Taking it is one statement, so two moderators
    opening the same object at once cannot both get it.
    """
    now = now or timezone.now()
    content_type = ContentType.objects.get_for_model(obj)
    table = connection.ops.quote_name(ReviewHold._meta.db_table)
    ReviewHold.objects.filter(content_type=content_type, moderator=user).exclude(object_pk=str(obj.pk)).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (content_type_id, object_pk, moderator_id, expires_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (content_type_id, object_pk) DO UPDATE "
            "SET moderator_id = EXCLUDED.moderator_id, expires_at = EXCLUDED.expires_at "
            f"WHERE {table}.moderator_id = EXCLUDED.moderator_id OR {table}.expires_at <= %s",
            [content_type.pk, str(obj.pk), user.pk, now + timedelta(seconds=moderation_settings.HOLD_SECONDS), now],
        )
    return ReviewHold.objects.select_related("moderator").get(content_type=content_type, object_pk=str(obj.pk))


def _holds_on(obj: models.Model) -> models.QuerySet:
    return ReviewHold.objects.filter(content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk))


def release(obj: models.Model, user) -> None:
    """``user`` is done with ``obj`` (stepped on): their hold ends; another's is left alone."""
    _holds_on(obj).filter(moderator=user).delete()


def release_all(obj: models.Model) -> None:
    """Someone decided on ``obj``: every hold on it ends, whoever's."""
    _holds_on(obj).delete()


def held_by_others(model: type[models.Model], user, *, now=None) -> dict[str, ReviewHold]:
    """The live holds of other moderators on objects of ``model``: {str(pk): hold}."""
    holds = ReviewHold.objects.filter(
        content_type=ContentType.objects.get_for_model(model), expires_at__gt=now or timezone.now()
    ).exclude(moderator=user)
    return {hold.object_pk: hold for hold in holds.select_related("moderator")}


def with_holders(queryset: models.QuerySet, user) -> models.QuerySet:
    """``queryset`` with ``moderation_held_by``: the user name of the other moderator who
    holds each object now, or None (one index lookup per row, on the unique key)."""
    holder = ReviewHold.objects.filter(
        content_type=ContentType.objects.get_for_model(queryset.model),
        object_pk=Cast(OuterRef("pk"), CharField()),
        expires_at__gt=Now(),
    ).exclude(moderator=user)
    username = f"moderator__{get_user_model().USERNAME_FIELD}"
    return queryset.annotate(moderation_held_by=Subquery(holder.values(username)[:1]))
