"""A category's key by its slug, from the site's cache: what a search filtered by category
asks on every request.

The search filters by the listing's own ``category_id``, not through a join on the slug,
so that PostgreSQL sees how small the category is (``serializers.ListingSearchFilters``).
Looking the key up was a statement of its own on every filtered search; the answer
changes only when a category is renamed or deleted, so it is kept in Django's cache
(``CACHES["default"]``: each process's own memory unless ``CACHE_URL`` names a shared
Redis) for ``KEY_CACHE_SECONDS``.

Saving or deleting a category forgets its slugs in this process's cache (the receivers
below), and in every process with a shared cache. With per-process caches, another
process may answer a renamed category's old slug for up to ``KEY_CACHE_SECONDS``; a
new slug is looked up at once, since only slugs that name a category are cached (a
request cannot fill the cache with made-up slugs). ``QuerySet.update()`` sends no
signal: its changes are seen when the entries expire.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from .models import Category

KEY_CACHE_SECONDS = 60  # how long another process may see a renamed slug's old key


def _cache_key(slug: str) -> str:
    return f"catalog:category-key:{slug}"


def key_of(slug: str) -> int | None:
    """The primary key of the category whose slug is ``slug``, None if there is none."""
    key = cache.get(_cache_key(slug))
    if key is None:
        key = Category.objects.filter(slug=slug).values_list("pk", flat=True).first()
        if key is not None:
            cache.set(_cache_key(slug), key, KEY_CACHE_SECONDS)
    return key


@receiver(pre_save, sender=Category, dispatch_uid="catalog.forget_renamed_category_key")
def forget_renamed_category_key(sender, instance, raw=False, **kwargs):
    """A renamed category's old slug no longer names it."""
    if instance.pk is not None and not raw:
        old = Category.objects.filter(pk=instance.pk).values_list("slug", flat=True).first()
        if old is not None and old != instance.slug:
            cache.delete(_cache_key(old))


@receiver(post_save, sender=Category, dispatch_uid="catalog.forget_saved_category_key")
@receiver(post_delete, sender=Category, dispatch_uid="catalog.forget_deleted_category_key")
def forget_category_key(sender, instance, **kwargs):
    cache.delete(_cache_key(instance.slug))
