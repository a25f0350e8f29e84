"""Two tasks at the same moment, in two threads with their own database sessions."""

import threading

import pytest
from django.db import connection

from moderation import duplicates, tasks
from moderation.embedders import decode_listing_image, get_embedder

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_tasks_scoring_the_same_picture_at_once_still_find_the_duplicate(
    demo_moderation, listing_factory, user_factory, photo, settings, monkeypatch
):
    """Task A has checked for duplicates and not yet committed when task B, scoring a
    copy of the same photo by another seller, starts: B waits on the picture's locks
    until A commits, then finds A's photo."""
    settings.MODERATION = {**demo_moderation, "COALESCE": False}  # one listing per task
    embedder = get_embedder()  # loaded once, before the threads share it
    embedder.embed(texts=["warm up"], images=[decode_listing_image(photo("blue"), embedder=embedder)])
    original = listing_factory(title="Red mug", image=photo("red", "cup"))
    copy = listing_factory(title="Red mug!", image=photo("red", "cup"), seller=user_factory())

    checked, go_on = threading.Event(), threading.Event()
    real = duplicates.duplicate_candidates

    def pausing_after_the_check(spec, objs, *args, **kwargs):
        found = real(spec, objs, *args, **kwargs)
        if objs[0].pk == original.pk:
            checked.set()
            go_on.wait(10)
        return found

    monkeypatch.setattr(duplicates, "duplicate_candidates", pausing_after_the_check)
    results = {}

    def run(listing):
        try:
            results[listing.pk] = tasks.moderate_object("catalog.listing", str(listing.pk), listing.moderation_version)
        finally:
            connection.close()

    a = threading.Thread(target=run, args=(original,))
    a.start()
    assert checked.wait(10)
    b = threading.Thread(target=run, args=(copy,))
    b.start()
    b.join(1.0)
    assert b.is_alive(), "B did not wait for A's lock on the picture"
    go_on.set()
    a.join(10)
    b.join(10)
    assert results == {original.pk: {"ok": 1}, copy.pk: {"flagged": 1}}
    copy.refresh_from_db()
    assert copy.flag_reasons == ["duplicate_image"]
    assert copy.duplicate_of == str(original.pk)
