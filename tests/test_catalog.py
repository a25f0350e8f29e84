"""The demo marketplace's models and admin."""

import pytest
from django.core.management import call_command

from catalog.models import Category, Listing

pytestmark = pytest.mark.django_db


def test_a_listing_with_an_image_saved_through_the_orm_stores_the_file_in_media(listing_factory, media_root):
    listing = listing_factory(title="Blue kettle", color=(20, 40, 200))
    listing.refresh_from_db()
    path = media_root / listing.image.name
    assert path.is_file()
    assert listing.image.name.startswith(f"listings/{listing.seller_id}/")
    assert listing.image.width == 64


def test_the_demo_catalogue_loads_once_with_images(media_root):
    call_command("catalog_load_demo", verbosity=0)
    call_command("catalog_load_demo", verbosity=0)
    count = Listing.objects.count()
    assert count >= 20
    assert Category.objects.count() >= 5
    assert all((media_root / listing.image.name).is_file() for listing in Listing.objects.all())
    # A demo seller can log in, so that an app can get a token for one (README).
    assert Listing.objects.first().seller.check_password("demo-seller-pass")
    # A listing its seller edited is not made again at the next start (a user trial: four
    # edited listings came back as reposts of themselves).
    edited = Listing.objects.first()
    edited.title = "Renamed by its seller"
    edited.save()
    Listing.objects.last().delete()
    call_command("catalog_load_demo", verbosity=0)
    assert Listing.objects.count() == count - 1


def test_the_admin_lists_listings(admin_client, listing_factory):
    listing_factory(title="Green lamp")
    response = admin_client.get("/admin/catalog/listing/")
    assert response.status_code == 200
    assert b"Green lamp" in response.content


def test_the_seller_is_emailed_the_reason_when_a_listing_is_rejected_and_not_when_approved(
    demo_moderation, listing_factory, user_factory, photo, admin_user, mailoutbox, django_capture_on_commit_callbacks
):
    from moderation import transitions
    from tests.helpers import score_now

    seller = user_factory(username="alice", email="alice@example.com")
    wrong = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"), seller=seller)
    fine = listing_factory(title="Red mug", image=photo("red", "cup"), seller=seller)
    score_now(wrong)
    score_now(fine)
    with django_capture_on_commit_callbacks(execute=True):
        transitions.reject(wrong, actor=admin_user, reason="The photo does not show the item described")
        transitions.approve(fine, actor=admin_user)
    [mail] = mailoutbox
    assert mail.to == ["alice@example.com"]
    assert "Red hiking boots" in mail.subject
    assert "The photo does not show the item described" in mail.body
    assert "0." not in mail.body  # no score


def test_a_rejection_made_in_the_review_queue_emails_the_seller_too(
    client,
    demo_moderation,
    listing_factory,
    user_factory,
    photo,
    moderator,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    """A user trial: rejections from "Listings to review" (the ``ListingReview`` proxy) sent
    the signal with the proxy as sender, so the demo's receiver for ``Listing`` never ran."""
    from catalog.models import ListingReview
    from moderation import signals, transitions
    from tests.helpers import score_now

    seller = user_factory(username="carol", email="carol@example.com")
    wrong = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"), seller=seller)
    score_now(wrong)
    client.force_login(moderator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/catalog/listingreview/{wrong.pk}/moderation/reject/", {"reason": "wrong photo"})
    assert response.status_code == 302
    [mail] = mailoutbox
    assert (mail.to, "wrong photo" in mail.body) == (["carol@example.com"], True)
    heard = []
    signals.object_decided.connect(lambda sender, **kwargs: heard.append(sender), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            transitions.undo(ListingReview.objects.get(pk=wrong.pk), actor=moderator, within_seconds=60)
            transitions.approve(ListingReview.objects.get(pk=wrong.pk), actor=moderator)
    finally:
        signals.object_decided.disconnect(dispatch_uid="t")
    assert heard == [Listing]


def test_the_demos_report_counts_the_reasons_of_what_waits_for_a_moderator(
    demo_moderation, listing_factory, photo, moderator
):
    """A user trial: "7 flagged" beside "flagged 13 x ...": reasons of decided listings counted too."""
    from io import StringIO

    from catalog.management.commands.demo import Command
    from moderation import transitions
    from tests.helpers import score_now

    waiting = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    decided = listing_factory(title="Red kettle", image=photo("green", "cup"))
    for listing in (waiting, decided):
        score_now(listing)
    transitions.reject(decided, actor=moderator, reason="wrong photo")
    out = StringIO()
    Command(stdout=out)._report_when_scored(timeout=0)
    assert "2 listings; 1 flagged, 1 rejected" in out.getvalue()
    assert out.getvalue().count("flagged 1 x the photo does not match the title and description") == 1
