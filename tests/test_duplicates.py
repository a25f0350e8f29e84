"""The duplicate check: the same picture used by another owner, found through the HNSW index and the pixels."""

import uuid

import pytest
from django.db import connection, transaction

from catalog.models import Listing
from moderation import duplicates, tasks, transitions
from moderation.models import ModerationStatus
from moderation.registry import get_spec
from tests.helpers import hnsw_index, index_plan, score_now

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
    """The batch duplicate query casts keys and owners to the model's own column types.
    Gadget names no created_field: its keys' order is the upload order, made so here."""
    maker = user_factory()
    original = gadget_factory(id=uuid.UUID(int=1), name="Red lamp", picture=photo("red", "cup"), maker=maker)
    score_now(original)
    same_maker = gadget_factory(id=uuid.UUID(int=2), name="Red lamp again", picture=photo("red", "cup"), maker=maker)
    no_maker = gadget_factory(id=uuid.UUID(int=3), name="Red lamp, no maker", picture=photo("red", "cup"))
    score_now(same_maker)
    score_now(no_maker)
    assert same_maker.flag_reasons == []
    assert no_maker.flag_reasons == ["duplicate_image"]  # an object without an owner is compared with all
    assert no_maker.duplicate_of in {str(original.pk), str(same_maker.pk)}
    other_maker = gadget_factory(
        id=uuid.UUID(int=4), name="Red lamp too", picture=photo("red", "cup"), maker=user_factory()
    )
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
    plan = index_plan(sql, params)
    assert f"Index Scan using {hnsw_index(Listing, 'image_vector')}" in plan, plan
    assert "Seq Scan on catalog_listing" not in plan, plan
    # What the lookup returns, computed exactly: an approximate index scan of a table whose
    # index still holds the rolled-back rows of earlier tests (no vacuum inside a test run)
    # may miss the one or two rows a filter leaves.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
        found = duplicates.duplicate_candidates(spec, batch, many_listings[:3], model_id="demo:colour-words-v1").earlier
    # Every listing here has the same seller: only the same owner's, and only those uploaded before.
    assert [[(c.pk, c.same_owner) for c in rows] for rows in found] == [
        [],
        [(batch[0].pk, True)],
        [(batch[0].pk, True), (batch[1].pk, True)]
        if found[2][0].pk == batch[0].pk
        else [(batch[1].pk, True), (batch[0].pk, True)],
    ]


def near_copies(many_listings, first_seller, other_seller, category):
    """Six listings of two sellers whose photos are slight variations of listing 500's
    vector of ``many_listings``, all uploaded after the thousand, at similarities from
    0.999 down to 0.90 (below the demo's DUPLICATE_MIN_SIMILARITY of 0.95)."""
    import numpy as np

    base = many_listings[500]
    noise = np.random.default_rng(9).standard_normal((6, 512)).astype(np.float32)
    noise -= np.outer(noise @ base, base)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    made = []
    for i, similarity in enumerate([0.999, 0.99, 0.97, 0.96, 0.93, 0.90]):
        vector = similarity * base + np.sqrt(1 - similarity**2) * noise[i]
        made.append(
            Listing(
                seller=first_seller if i % 2 else other_seller,
                category=category,
                title=f"copy {i}",
                price=1,
                image="x.jpg",
                moderation_status=S.OK,
                embedding_model="demo:colour-words-v1",
                image_vector=vector,
                text_vector=vector,
            )
        )
    return Listing.objects.bulk_create(made)  # no save signal: no photo to hash


def test_the_tasks_lookup_returns_what_the_checks_keep_of_the_full_lookup_earlier_and_later(
    many_listings, user_factory
):
    """With ``limits`` (the task's call), one statement returns, for each photo, exactly
    the candidates of the lookup without them that are at least DUPLICATE_MIN_SIMILARITY
    similar and not in the batch, earlier uploads and later copies apart."""
    spec = get_spec(Listing)
    first = Listing.objects.get(title="item 1")
    copies = near_copies(many_listings, first.seller, user_factory(), first.category)
    # Listing 500 itself (earlier than the copies) and two of the copies, as a batch.
    batch = [Listing.objects.get(title="item 500"), copies[1], copies[4]]
    vectors = [many_listings[500], copies[1].image_vector, copies[4].image_vector]
    limits = [{"DUPLICATE_MIN_SIMILARITY": 0.95}, {"DUPLICATE_MIN_SIMILARITY": 0.95}, {"DUPLICATE_MIN_SIMILARITY": 0.8}]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")  # exact, as above
        full = duplicates.duplicate_candidates(spec, batch, vectors, model_id="demo:colour-words-v1")
        kept = duplicates.duplicate_candidates(spec, batch, vectors, model_id="demo:colour-words-v1", limits=limits)
    in_batch = {obj.pk for obj in batch}
    for found, filtered in ((full.earlier, kept.earlier), (full.later, kept.later)):
        assert [
            [c for c in rows if c.pk not in in_batch and c.similarity >= x["DUPLICATE_MIN_SIMILARITY"]]
            for rows, x in zip(found, limits, strict=True)
        ] == filtered
    # Listing 500's later copies of another seller at >= 0.95: copies 0 and 2 (4 is in the
    # batch); nothing earlier is near it.
    assert ([c.pk for c in kept.earlier[0]], [c.pk for c in kept.later[0]]) == ([], [copies[0].pk, copies[2].pk])
    # Copy 1: listing 500 is in the batch, copy 0 (0.999 x 0.99 to it) is another seller's earlier upload.
    assert [(c.pk, c.same_owner) for c in kept.earlier[1]] == [(copies[0].pk, False)]
    # Copy 4, at a limit of 0.8: the copies uploaded before it, its own seller's (0, 2) and another's (3).
    assert {(c.pk, c.same_owner) for c in kept.earlier[2]} == {
        (copies[0].pk, True),
        (copies[2].pk, True),
        (copies[3].pk, False),
    }


def test_the_tasks_lookup_is_one_statement_of_index_searches(many_listings):
    """The three searches a photo (earlier uploads of other owners and of its own, later
    copies) stay HNSW index searches with the similarity condition outside them."""
    spec = get_spec(Listing)
    batch = list(Listing.objects.order_by("pk")[:3])
    limits = [{"DUPLICATE_MIN_SIMILARITY": 0.95}] * 3
    sql, params = duplicates.duplicate_query(
        spec, batch, many_listings[:3], model_id="demo:colour-words-v1", limits=limits
    )
    plan = index_plan(sql, params)
    assert plan.count(f"Index Scan using {hnsw_index(Listing, 'image_vector')}") == 3, plan
    assert "Seq Scan on catalog_listing" not in plan, plan


def test_the_original_seller_editing_her_title_stays_ok_and_only_the_later_copy_is_flagged(
    demo_moderation, listing_factory, user_factory, photo
):
    """The issue's sequence: A uploads first, B copies A's photo, A then fixes a typo."""
    alice, bob = user_factory(username="alice"), user_factory(username="bob")
    original = listing_factory(title="Red cermaic mug", image=photo("red", "cup"), seller=alice)
    score_now(original)
    assert original.moderation_status == S.OK
    copy = listing_factory(title="Red mug, like new", image=photo("red", "cup"), seller=bob)
    score_now(copy)
    assert (copy.moderation_status, copy.flag_reasons, copy.duplicate_of) == (
        S.FLAGGED,
        ["duplicate_image"],
        str(original.pk),
    )
    original.title = "Red ceramic mug"
    original.save()
    score_now(original)
    assert (original.moderation_status, original.flag_reasons, original.duplicate_of) == (S.OK, [], "")
    score_now(copy, force=True)
    assert (copy.moderation_status, copy.duplicate_of) == (S.FLAGGED, str(original.pk))


def test_a_rescan_of_forty_older_listings_flags_none_of_them_because_of_later_copies(
    demo_moderation, listing_factory, user_factory, photo
):
    alice, bob = user_factory(username="alice"), user_factory(username="bob")
    colours = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "brown")
    drawn = [(colour, shape) for colour in colours for shape in ("cup", "disc", "shoe", "shirt", "bar")]
    originals = [listing_factory(title=f"{c} {s}", image=photo(c, s), seller=alice) for c, s in drawn]
    copies = [listing_factory(title=f"{c} {s}, as new", image=photo(c, s), seller=bob) for c, s in drawn]
    every = [(str(x.pk), x.moderation_version) for x in [*originals, *copies]]
    for start in range(0, len(every), 16):
        tasks.moderate_batch("catalog.listing", every[start : start + 16])
    # The copies are in the database now; the originals are rescanned, copies first in each batch.
    for start in range(0, len(originals), 16):
        batch = [*copies[start : start + 16], *originals[start : start + 16]]
        tasks.moderate_batch("catalog.listing", [(str(x.pk), x.moderation_version) for x in batch], True)
    statuses = dict(Listing.objects.values_list("pk", "moderation_status"))
    assert len(originals) == 40
    assert [statuses[x.pk] for x in originals] == [S.OK] * 40
    assert [statuses[x.pk] for x in copies] == [S.FLAGGED] * 40
    assert set(Listing.objects.filter(seller=bob).values_list("duplicate_of", flat=True)) <= {
        str(x.pk) for x in originals
    }


def test_a_rejected_listing_is_nobodys_original(demo_moderation, listing_factory, user_factory, moderator, photo):
    first = listing_factory(title="Red mug", image=photo("red", "cup"))
    score_now(first)
    transitions.reject(first, actor=moderator, reason="stolen photo")
    later = listing_factory(title="Red mug, used", image=photo("red", "cup"), seller=user_factory())
    score_now(later)
    assert (later.moderation_status, later.flag_reasons) == (S.OK, [])


def test_a_seller_reposting_the_same_listing_is_flagged_as_a_repost_of_the_first(
    demo_moderation, listing_factory, photo
):
    first = listing_factory(title="Red mug", description="350 ml, dishwasher safe.", image=photo("red", "cup"))
    score_now(first)
    again = listing_factory(
        title="Red mug", description="350 ml, dishwasher safe!", image=photo("red", "cup"), seller=first.seller
    )
    score_now(again)
    assert (again.moderation_status, again.flag_reasons, again.duplicate_of) == (
        S.FLAGGED,
        ["repost"],
        str(first.pk),
    )
    first.refresh_from_db()
    assert first.flag_reasons == []


def test_a_seller_listing_her_own_photo_again_after_another_sellers_copy_is_a_repost_of_her_original(
    demo_moderation, listing_factory, user_factory, photo
):
    """The issue's sequence: A uploads, B copies, A fixes a typo, A lists the same lamp again.
    The original is the earliest upload of the picture, whoever owns it: here A's own."""
    alice, bob = user_factory(username="alice"), user_factory(username="bob")
    original = listing_factory(
        title="Red desk lamp", description="Brass, 40 cm.", image=photo("red", "cup"), seller=alice
    )
    score_now(original)
    copy = listing_factory(title="Red lamp, like new", image=photo("red", "cup"), seller=bob)
    score_now(copy)
    assert (copy.flag_reasons, copy.duplicate_of) == (["duplicate_image"], str(original.pk))
    original.description = "Brass, 40 cm tall."
    original.save()
    score_now(original)
    assert (original.moderation_status, original.flag_reasons) == (S.OK, [])
    again = listing_factory(
        title="Red desk lamp", description="Brass, 40 cm tall.", image=photo("red", "cup"), seller=alice
    )
    score_now(again)
    assert (again.moderation_status, again.flag_reasons, again.duplicate_of) == (
        S.FLAGGED,
        ["repost"],
        str(original.pk),
    )


def test_a_seller_listing_her_own_photo_with_new_text_after_another_sellers_copy_is_not_flagged(
    demo_moderation, listing_factory, user_factory, photo
):
    alice, bob = user_factory(username="alice"), user_factory(username="bob")
    original = listing_factory(title="Red desk lamp", image=photo("red", "cup"), seller=alice)
    score_now(original)
    score_now(listing_factory(title="Red lamp, like new", image=photo("red", "cup"), seller=bob))
    other_lamp = listing_factory(title="Second red lamp, same model, 30 cm", image=photo("red", "cup"), seller=alice)
    score_now(other_lamp)
    assert (other_lamp.moderation_status, other_lamp.flag_reasons, other_lamp.duplicate_of) == (S.OK, [], "")
