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
    with django_capture_on_commit_callbacks() as callbacks:
        listing = listing_factory(image=photo("red"))
    assert OrmQ.objects.count() == 0  # not before the commit
    for callback in callbacks:
        callback()
    listing.refresh_from_db()
    assert listing.moderation_status == S.PENDING
    assert listing.moderation_version == 1
    assert len(listing.content_hash) == 64
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


@pytest.mark.parametrize(
    "embedder",
    [
        pytest.param({"model_id": "demo:colour-words-v2"}, id="another-model"),
        pytest.param({"model_dir": "/nonexistent"}, id="misconfigured"),
    ],
)
def test_a_save_that_changes_neither_text_nor_photo_keeps_a_decision_whatever_the_embedder(
    demo_moderation, settings, listing_factory, photo, admin_user, embedder
):
    """A price change after the embedder changed (before moderation_reembed ran) or while it
    is misconfigured must not reopen a moderator's rejection: the hash covers content only."""
    from moderation import transitions
    from tests.helpers import score_now

    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    transitions.reject(listing, actor=admin_user, reason="misleading photo")
    settings.MODERATION = {
        **demo_moderation,
        "EMBEDDER": {**demo_moderation["EMBEDDER"], "OPTIONS": {**demo_moderation["EMBEDDER"]["OPTIONS"], **embedder}},
    }
    listing.refresh_from_db()
    listing.price = 1
    listing.save()
    listing.refresh_from_db()
    assert listing.moderation_status == S.REJECTED
    assert listing.moderation_version == 1


@pytest.mark.parametrize(
    ("spelling", "decide", "decided"),
    [
        (1, "reject", S.REJECTED),  # 0.1's spelling, which also covered the model
        (0, "approve", S.APPROVED),  # 0.2-0.5's, which left out the category
    ],
)
def test_a_hash_an_earlier_version_stored_is_respelled_without_new_content(
    demo_moderation, listing_factory, photo, admin_user, spelling, decide, decided
):
    from catalog.models import Listing
    from moderation import transitions
    from moderation.registry import get_spec
    from tests.helpers import score_now

    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    getattr(transitions, decide)(listing, actor=admin_user, reason="wrong photo")
    spec = get_spec(Listing)
    legacy = spec.content_hashes(listing, model_id=listing.embedding_model)[1][spelling]
    Listing.objects.filter(pk=listing.pk).update(content_hash=legacy)
    listing.refresh_from_db()
    listing.price = 2
    listing.save()
    listing.refresh_from_db()
    assert (listing.moderation_status, listing.moderation_version) == (decided, 1)
    assert listing.content_hash == spec.content_hash(listing) != legacy
    listing.title = "Blue hiking boots"
    listing.save()
    listing.refresh_from_db()
    assert (listing.moderation_status, listing.moderation_version) == (S.PENDING, 2)


def test_moving_a_listing_to_another_category_scores_it_again(
    demo_moderation, listing_factory, category_factory, photo, admin_user, django_capture_on_commit_callbacks
):
    """The category check must see where the listing stands now: a seller could otherwise
    pass it in one category and move it to another (found by a user trial)."""
    from moderation import transitions
    from tests.helpers import score_now

    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    transitions.approve(listing, actor=admin_user, reason="")
    listing.refresh_from_db()
    with django_capture_on_commit_callbacks():
        listing.category = category_factory("Garden")
        listing.save(update_fields=["category"])
    listing.refresh_from_db()
    assert (listing.moderation_status, listing.moderation_version) == (S.PENDING, 2)
    score_now(listing)
    listing.refresh_from_db()
    assert listing.moderation_status in (S.OK, S.FLAGGED)
