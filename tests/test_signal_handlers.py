"""Saving a moderated object: save -> content hash -> pending and one task queued on commit, or nothing."""

import pytest
from django_q.models import OrmQ

from moderation.models import ModerationStatus
from tests.helpers import history

pytestmark = pytest.mark.django_db
S = ModerationStatus


def test_saving_a_listing_makes_it_pending_and_queues_one_task_on_commit(
    demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        listing = listing_factory(image=photo("red"))
    listing.refresh_from_db()
    assert listing.moderation_status == S.PENDING
    assert listing.moderation_version == 1
    assert len(listing.content_hash) == 64
    assert len(callbacks) == 1
    assert OrmQ.objects.count() == 1
    assert history(listing) == [("", S.PENDING)]


def test_a_save_that_changes_neither_text_nor_photo_queues_nothing(
    demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    listing = listing_factory(image=photo("red"))
    listing.price = 99
    with django_capture_on_commit_callbacks() as callbacks:
        listing.save()
    listing.refresh_from_db()
    assert callbacks == []
    assert listing.moderation_version == 1
