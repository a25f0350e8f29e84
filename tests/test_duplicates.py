"""The duplicate check: the same picture used by another owner, found through the HNSW index and the pixels."""

import pytest
from django.db import connection, transaction

from catalog.models import Listing
from moderation import duplicates, tasks, vectors
from moderation.models import ModerationStatus
from moderation.registry import get_spec
from tests.helpers import hnsw_index, score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


def test_a_photo_reused_by_another_seller_is_flagged_as_a_duplicate(
    demo_moderation, listing_factory, user_factory, photo
):
    original = listing_factory(title="Red mug", image=photo("red", "cup"))
    score_now(original)
    copy = listing_factory(title="Red mug, barely used", image=photo("red", "cup"), seller=user_factory())
    score_now(copy)
    assert copy.moderation_status == S.FLAGGED
    assert copy.flag_reasons == ["duplicate_image"]
    assert copy.duplicate_of == str(original.pk)
    assert copy.duplicate_similarity > 0.99


def test_the_same_seller_reusing_a_photo_and_another_photo_of_the_same_colour_are_not_duplicates(
    demo_moderation, listing_factory, user_factory, photo
):
    first = listing_factory(title="Red mug", image=photo("red", "cup"))
    score_now(first)
    again = listing_factory(title="Red mug (2 available)", image=photo("red", "cup"), seller=first.seller)
    other = listing_factory(title="Red shoes", image=photo("red", "shoe"), seller=user_factory())
    score_now(again)
    score_now(other)
    assert again.moderation_status == S.OK
    assert other.moderation_status == S.OK  # CLIP-close, but a different picture


def test_duplicates_on_a_uuid_keyed_model_with_an_optional_owner(demo_moderation, gadget_factory, user_factory, photo):
    """The batch duplicate query casts keys and owners to the model's own column types."""
    maker = user_factory()
    original = gadget_factory(name="Red lamp", picture=photo("red", "cup"), maker=maker)
    score_now(original)
    same_maker = gadget_factory(name="Red lamp again", picture=photo("red", "cup"), maker=maker)
    no_maker = gadget_factory(name="Red lamp, no maker", picture=photo("red", "cup"))
    score_now(same_maker)
    score_now(no_maker)
    assert same_maker.flag_reasons == []
    assert no_maker.flag_reasons == ["duplicate_image"]  # an object without an owner is compared with all
    assert no_maker.duplicate_of in {str(original.pk), str(same_maker.pk)}
    other_maker = gadget_factory(name="Red lamp too", picture=photo("red", "cup"), maker=user_factory())
    score_now(other_maker)
    assert other_maker.flag_reasons == ["duplicate_image"]


def test_the_same_photo_twice_in_one_batch_is_still_a_duplicate(demo_moderation, listing_factory, user_factory, photo):
    first = listing_factory(title="Red mug", image=photo("red", "cup"))
    second = listing_factory(title="Red mug!", image=photo("red", "cup"), seller=user_factory())
    items = [(str(x.pk), x.moderation_version) for x in (first, second)]
    assert tasks.moderate_batch("catalog.listing", items) == {"ok": 1, "flagged": 1}
    second.refresh_from_db()
    assert second.flag_reasons == ["duplicate_image"]
    assert second.duplicate_of == str(first.pk)


def test_the_duplicate_check_of_a_batch_is_one_index_search_per_photo(many_listings):
    """The pipeline's duplicate check: one statement for a batch, each photo's
    neighbours found through the HNSW index (LATERAL join), never by a scan."""
    spec = get_spec(Listing)
    batch = list(Listing.objects.order_by("pk")[:3])
    sql, params = duplicates.duplicate_query(spec, batch, many_listings[:3], model_id="demo:colour-words-v1")
    with transaction.atomic():
        vectors.set_index_options(k=10)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan using {hnsw_index(Listing, 'image_vector')}" in plan, plan
    assert "Seq Scan on catalog_listing" not in plan, plan
    found = duplicates.duplicate_candidates(spec, batch, many_listings[:3], model_id="demo:colour-words-v1")
    # Every listing here has the same seller: no candidates from the same owner.
    assert found == [[], [], []]
