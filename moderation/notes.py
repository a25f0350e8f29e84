"""Moderators' internal notes on an object, kept beside its decisions; never shown to the seller."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db import models

from .models import Note


def add_note(obj: models.Model, *, author, text: str) -> Note:
    """A note by ``author`` on ``obj``. ``text`` is checked by the caller's form (length, NUL)."""
    return Note.objects.create(
        content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk), author=author, text=text
    )


def notes_of(obj: models.Model):
    """The object's notes, newest first."""
    return Note.objects.filter(content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk))
