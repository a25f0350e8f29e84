"""Save -> content hash -> (if changed) pending + a task queued on commit. Nothing else.

The request that saves a listing never waits for an embedder: it hashes the text and
the photo's bytes, and only when they changed does it mark the object ``pending`` and
queue a task, through ``transaction.on_commit`` so the worker sees the committed row.
"""

from __future__ import annotations

import logging

from django.db.models.signals import post_save

from .embedders import EmbedderError, get_embedder
from .registry import get_spec, is_registered
from .transitions import content_changed

logger = logging.getLogger("moderation")


def current_model_id() -> str:
    """The configured embedder's model id; a broken configuration must not break saving."""
    try:
        return get_embedder().model_id
    except EmbedderError as exc:
        logger.error("the embedder is misconfigured; objects stay pending until it is fixed: %s", exc)
        return "unconfigured"


def on_save(sender, instance, created, raw=False, update_fields=None, **kwargs) -> None:
    if raw or not is_registered(sender):
        return
    spec = get_spec(sender)
    if update_fields is not None and not set(update_fields) & {*spec.text_fields, spec.image_field}:
        return  # e.g. our own score writes, or a price change saved with update_fields
    new_hash = spec.content_hash(instance, model_id=current_model_id())
    if created or new_hash != instance.content_hash:
        content_changed(instance, new_hash=new_hash, created=created)


def connect() -> None:
    post_save.connect(on_save, dispatch_uid="moderation.on_save")
