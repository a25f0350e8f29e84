"""Save -> content hash -> (if changed) pending + a task queued on commit. Nothing else.

The request that saves a listing never waits for an embedder: it hashes the text, the
photo's bytes and the category (``ModerationSpec.content_hash``), and only when they changed does
``transitions.content_changed`` mark the object ``pending`` and queue a task, through
``transaction.on_commit`` so the worker sees the committed row. ``connect`` is called
by the app's ``ready``. Deleting a rejected object keeps its photo (``on_delete``).
"""

from __future__ import annotations

from django.apps import apps
from django.db.models.signals import post_save, pre_delete

from .registry import get_spec, is_registered
from .transitions import content_changed, remember_rejected_photo


def on_save(sender, instance, created, raw=False, update_fields=None, **kwargs) -> None:
    """``post_save`` of any model: moderated ones whose text or photo changed go back to pending."""
    if raw or not is_registered(sender):
        return
    spec = get_spec(sender)
    if update_fields is not None and not set(update_fields) & spec.content_fields:
        return  # e.g. our own score writes, or a price change saved with update_fields
    new_hash, earlier = spec.content_hashes(instance, model_id=instance.embedding_model)
    if created or new_hash == instance.content_hash:
        if created:
            content_changed(instance, new_hash=new_hash, created=True)
        return
    if instance.content_hash in earlier:
        # Stored by an earlier version (0.1 also covered the model, 0.2-0.5 left out the
        # category): the same content in the old spelling. Re-spelled without a
        # transition; a category changed in this very save is taken as the baseline.
        sender._default_manager.filter(pk=instance.pk).update(content_hash=new_hash)
        instance.content_hash = new_hash
        return
    content_changed(instance, new_hash=new_hash, created=False)


def on_delete(sender, instance, **kwargs) -> None:
    """``pre_delete`` of a registered model (and its proxies): a rejected object's photo is
    kept (``transitions.remember_rejected_photo``), so that its owner cannot list it
    again by deleting the rejected listing first."""
    remember_rejected_photo(sender, instance.pk)


def connect() -> None:
    post_save.connect(on_save, dispatch_uid="moderation.on_save")
    # Per model, never for all: a pre_delete receiver for every model would cost every
    # other model Django's fast deletes.
    for model in apps.get_models():
        if is_registered(model):
            pre_delete.connect(on_delete, sender=model, dispatch_uid=f"moderation.on_delete.{model._meta.label_lower}")
