"""The moderated model's QuerySet vocabulary: the queries the admin, the API and search share."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test.utils import isolate_apps

from catalog.models import Listing
from moderation import transitions
from moderation.models import ModeratedModel

pytestmark = pytest.mark.django_db


def titles(queryset) -> list[str]:
    return list(queryset.values_list("title", flat=True))


def test_what_needs_review_is_flagged_or_errored_most_severe_first(review_catalogue):
    assert titles(Listing.objects.needs_review()) == ["Mug, red", "Red hiking boots", "Green chair"]


def test_public_listings_are_ok_or_approved(review_catalogue, admin_user):
    assert titles(Listing.objects.public()) == ["Red ceramic mug"]
    transitions.approve(review_catalogue["mismatch"], actor=admin_user)
    assert set(titles(Listing.objects.public())) == {"Red ceramic mug", "Red hiking boots"}


def test_flagged_for_a_reason(review_catalogue):
    assert titles(Listing.objects.flagged_for("duplicate_image")) == ["Mug, red"]
    assert titles(Listing.objects.flagged_for("category_mismatch")) == []


def test_each_user_sees_the_public_listings_and_their_own_and_a_moderator_sees_all(review_catalogue, moderator):
    everyone = {"Red ceramic mug"}
    alice, bob = review_catalogue["ok"].seller, review_catalogue["duplicate"].seller
    assert set(titles(Listing.objects.visible_to(AnonymousUser()))) == everyone
    assert set(titles(Listing.objects.visible_to(alice))) == everyone | {"Red hiking boots"}
    assert set(titles(Listing.objects.visible_to(bob))) == everyone | {"Mug, red", "Green chair"}
    assert Listing.objects.visible_to(moderator).count() == 4


@isolate_apps("tests.testapp")
def test_a_long_app_label_and_model_name_get_hnsw_index_names_django_accepts():
    """Issue #12: marketplace.ProductListing failed `check` with models.E034 (the names were
    "<app_label>_<class>_img_hnsw", 35 characters)."""

    class ProductListing(ModeratedModel):
        class Meta(ModeratedModel.Meta):
            app_label = "marketplace"

    names = [index.name for index in ProductListing._meta.indexes]
    assert len(set(names)) == 2
    assert all(len(name) <= 30 and name.startswith("marketplace_") for name in names)
    assert ProductListing.check() == []


@isolate_apps("tests.testapp")
def test_two_models_whose_labels_begin_alike_get_different_index_names():
    class ProductListingDraft(ModeratedModel):
        class Meta(ModeratedModel.Meta):
            app_label = "marketplace"

    class ProductListingFinal(ModeratedModel):
        class Meta(ModeratedModel.Meta):
            app_label = "marketplace"

    names = {index.name for model in (ProductListingDraft, ProductListingFinal) for index in model._meta.indexes}
    assert len(names) == 4
