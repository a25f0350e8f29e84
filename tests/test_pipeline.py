"""The moderation pipeline in one process: save -> hash -> queue, then the task's
scoring, states, audit trail and retries. The real qcluster runs in test_qcluster.py."""

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ

from catalog.models import Listing
from moderation import tasks, transitions
from moderation.exceptions import InvalidTransition
from moderation.models import Decision, ModerationStatus
from moderation.registry import get_spec
from tests.embedders import WorkerKilled
from tests.helpers import demo_moderation_settings, score_now
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db
S = ModerationStatus


def history(obj):
    """(from, to) of the object's decisions, oldest first."""
    return list(transitions.history(obj).order_by("created_at", "id").values_list("from_status", "to_status"))


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


def test_a_matching_listing_ends_ok_with_its_scores_and_audit(demo_moderation, listing_factory, photo):
    listing = listing_factory(title="Red ceramic mug", image=photo("red", "cup"))
    assert score_now(listing) == {"ok": 1}
    assert listing.moderation_status == S.OK
    assert listing.consistency_score > 0.8
    assert listing.embedding_model == "demo:colour-words-v1"
    assert listing.text_vector is not None
    assert listing.image_vector is not None
    assert history(listing) == [("", S.PENDING), (S.PENDING, S.OK)]
    scored = Decision.objects.get(to_status=S.OK)
    assert scored.actor is None
    assert scored.scores["consistency"] == pytest.approx(listing.consistency_score)


def test_a_mismatched_listing_is_flagged_with_the_reason(demo_moderation, listing_factory, photo):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    assert listing.moderation_status == S.FLAGGED
    assert listing.flag_reasons == ["text_image_mismatch"]
    assert listing.severity == 20
    assert listing.consistency_score < 0.5
    assert listing.flag_reason_labels == ["The photo does not match the title and description"]


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


def test_a_task_run_twice_writes_once(demo_moderation, listing_factory, photo):
    listing = listing_factory(title="Blue kettle", image=photo("blue", "cup"))
    score_now(listing)
    assert score_now(listing) == {"current": 1}
    assert history(listing) == [("", S.PENDING), (S.PENDING, S.OK)]


def test_a_task_for_an_old_version_scores_nothing_without_claims(demo_moderation, listing_factory, photo, settings):
    """Without coalescing the new version's own task scores it (with claims, the old
    task scores the current version: tests/test_claims.py)."""
    settings.MODERATION = {**demo_moderation, "COALESCE": False}
    listing = listing_factory(title="Blue kettle", image=photo("blue", "cup"))
    old_version = listing.moderation_version
    listing.title = "Green kettle"
    listing.save()
    assert tasks.moderate_object("catalog.listing", str(listing.pk), old_version) == {"superseded": 1}
    listing.refresh_from_db()
    assert listing.moderation_status == S.PENDING


def test_a_decision_survives_a_rescan_of_unchanged_content(demo_moderation, listing_factory, photo, admin_user):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    transitions.reject(listing, actor=admin_user, reason="misleading photo")
    score_now(listing, force=True)
    assert listing.moderation_status == S.REJECTED
    assert listing.flag_reasons == ["text_image_mismatch"]
    assert history(listing)[-1] == (S.FLAGGED, S.REJECTED)


def test_a_sellers_edit_sends_a_decided_listing_back_to_pending_and_keeps_the_history(
    demo_moderation, listing_factory, photo, admin_user
):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    transitions.approve(listing, actor=admin_user)
    listing.title = "Blue hiking boots"
    listing.save()
    listing.refresh_from_db()
    assert listing.moderation_status == S.PENDING
    assert listing.moderation_version == 2
    score_now(listing)
    assert listing.moderation_status == S.OK
    assert history(listing) == [
        ("", S.PENDING),
        (S.PENDING, S.FLAGGED),
        (S.FLAGGED, S.APPROVED),
        (S.APPROVED, S.PENDING),
        (S.PENDING, S.OK),
    ]


def test_a_photo_that_cannot_be_decoded_goes_to_error_with_its_code(demo_moderation, listing_factory):
    listing = listing_factory(stored_image=b"<html>not a photo</html>")
    score_now(listing)
    assert listing.moderation_status == S.ERROR
    assert listing.moderation_error == "image_format"
    assert listing.moderation_retry_at is None  # permanent: the sweeper leaves it alone
    assert listing.moderation_attempts == 1


def test_transitions_that_do_not_start_from_an_allowed_state_are_refused(
    demo_moderation, listing_factory, photo, admin_user
):
    listing = listing_factory(image=photo("red"))
    score_now(listing)
    transitions.approve(listing, actor=admin_user)
    with pytest.raises(InvalidTransition, match="approved"):
        transitions.approve(listing, actor=admin_user)


def test_a_model_with_a_uuid_key_and_other_field_names_is_moderated(demo_moderation, gadget_factory, photo):
    gadget = gadget_factory(name="Green desk lamp", kind=Gadget.Kind.GREEN, picture=photo("green"))
    score_now(gadget)
    assert gadget.moderation_status == S.OK
    assert gadget.category_rank == 1
    assert history(gadget) == [("", S.PENDING), (S.PENDING, S.OK)]


def test_a_photo_unlike_its_category_is_flagged_with_the_categories_it_looks_like(
    settings, demo_moderation, gadget_factory, photo
):
    settings.MODERATION = {**demo_moderation, "CATEGORY_THRESHOLDS": {"Red gear": {"CATEGORY_MAX_RANK": 1}}}
    gadget = gadget_factory(name="Lamp", kind=Gadget.Kind.RED, picture=photo("blue"))
    score_now(gadget)
    assert gadget.moderation_status == S.FLAGGED
    assert "category_mismatch" in gadget.flag_reasons
    assert gadget.category_rank > 1
    assert gadget.suggested_categories[0]["category"] == "Blue gear"


def test_a_batch_is_embedded_with_one_call_per_modality(settings, listing_factory, photo):
    from tests.fake_provider import FakeProvider

    provider = FakeProvider(dims=512).start()
    try:
        settings.MODERATION = {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {"base_url": provider.url, "dimensions": 512, "max_batch": 32},
            },
        }
        listings = [listing_factory(title=f"Item {i}", image=photo("red", seed=f"item-{i}")) for i in range(5)]
        result = tasks.moderate_batch("catalog.listing", [(str(x.pk), x.moderation_version) for x in listings])
        assert sum(result.values()) == 5
        assert len(provider.requests) == 2  # one text call, one image call
        assert not Listing.objects.filter(moderation_status=S.PENDING).exists()
    finally:
        provider.stop()


def test_a_provider_outage_leaves_listings_pending_with_growing_retry_delays_then_error(
    settings, listing_factory, photo
):
    from tests.fake_provider import FakeProvider, Scripted

    provider = FakeProvider(dims=512).start()
    try:
        settings.MODERATION = {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {"base_url": provider.url, "dimensions": 512, "max_retries": 0},
            },
            "MAX_ATTEMPTS": 3,
            "RETRY_BASE_DELAY_SECONDS": 30,
        }
        provider.fail_next(*[Scripted(503, body={"error": "down"})] * 20)
        listing = listing_factory(image=photo("red"))
        delays = []
        for _ in range(2):
            score_now(listing)
            assert listing.moderation_status == S.PENDING
            delays.append((listing.moderation_retry_at - timezone.now()).total_seconds())
        assert 25 < delays[0] <= 30
        assert 55 < delays[1] <= 60
        assert listing.moderation_attempts == 2
        assert listing.moderation_error == "unavailable"
        score_now(listing)
        assert listing.moderation_status == S.ERROR
        assert listing.moderation_retry_at is not None  # the sweeper will try again later
        assert history(listing)[-1] == (S.PENDING, S.ERROR)
    finally:
        provider.stop()


def test_the_sweeper_requeues_lost_and_due_work(demo_moderation, listing_factory, photo):
    from datetime import timedelta

    lost = listing_factory(image=photo("red"))
    Listing.objects.filter(pk=lost.pk).update(moderation_queued_at=timezone.now() - timedelta(hours=1))
    fresh = listing_factory(image=photo("blue"))
    due = listing_factory(image=photo("green"))
    Listing.objects.filter(pk=due.pk).update(
        moderation_status=S.ERROR, moderation_retry_at=timezone.now() - timedelta(seconds=1)
    )
    before = OrmQ.objects.count()
    assert tasks.sweep() == 2
    assert OrmQ.objects.count() == before + 1  # one batch task
    fresh.refresh_from_db()
    assert fresh.moderation_status == S.PENDING


def test_scan_sync_scores_every_pending_listing_with_a_progress_bar(demo_moderation, listing_factory, photo, capsys):
    for colour in ["red", "blue", "green"]:
        listing_factory(title=f"{colour} box", image=photo(colour))
    call_command("moderation_scan", "--sync")
    out = capsys.readouterr()
    assert not Listing.objects.filter(moderation_status=S.PENDING).exists()
    assert "3 object(s)" in out.out
    assert "ok" in out.out


def test_reembed_writes_vectors_of_the_new_model_and_keeps_decisions(
    settings, demo_moderation, listing_factory, photo, admin_user
):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    transitions.reject(listing, actor=admin_user)
    settings.MODERATION = {
        **demo_moderation,
        "EMBEDDER": {
            **demo_moderation["EMBEDDER"],
            "OPTIONS": {**demo_moderation["EMBEDDER"]["OPTIONS"], "model_id": "demo:colour-words-v2"},
        },
    }
    call_command("moderation_reembed", "--sync")
    listing.refresh_from_db()
    assert listing.embedding_model == "demo:colour-words-v2"
    assert listing.moderation_status == S.REJECTED


def test_the_same_photo_twice_in_one_batch_is_still_a_duplicate(demo_moderation, listing_factory, user_factory, photo):
    first = listing_factory(title="Red mug", image=photo("red", "cup"))
    second = listing_factory(title="Red mug!", image=photo("red", "cup"), seller=user_factory())
    items = [(str(x.pk), x.moderation_version) for x in (first, second)]
    assert tasks.moderate_batch("catalog.listing", items) == {"ok": 1, "flagged": 1}
    second.refresh_from_db()
    assert second.flag_reasons == ["duplicate_image"]
    assert second.duplicate_of == str(first.pk)


def test_hashes_of_the_same_picture_share_a_lock_key(demo_moderation):
    """The bands of the duplicate check's locks: any two hashes within LOCKED_DISTANCE
    bits share a key (pigeonhole), whichever bits differ; unrelated hashes do not."""
    import itertools
    import random

    from moderation import claims
    from moderation.registry import get_spec

    spec, rng = get_spec(Listing), random.Random(7)
    for _ in range(300):
        phash = rng.getrandbits(64)
        near = phash ^ sum(1 << bit for bit in rng.sample(range(64), rng.randint(0, claims.LOCKED_DISTANCE)))
        assert claims.picture_keys(spec, phash) & claims.picture_keys(spec, near)
    unrelated = [claims.picture_keys(spec, rng.getrandbits(64)) for _ in range(200)]
    assert not any(a & b for a, b in itertools.pairwise(unrelated))
    assert len(claims.picture_keys(spec, 0)) == claims.LOCKED_DISTANCE + 1


@pytest.fixture
def crashing_moderation(settings, demo_model_dir):
    """The demo model, except that a text with CRASH kills the task (in this process:
    raises WorkerKilled, which no ``except Exception`` catches); two attempts at most."""
    settings.MODERATION = demo_moderation_settings(
        demo_model_dir,
        EMBEDDER={
            "BACKEND": "tests.embedders.CrashingEmbedder",
            "OPTIONS": {"model_dir": str(demo_model_dir), "threads": 1, "kill": False},
        },
        MAX_ATTEMPTS=2,
    )
    return settings.MODERATION


def deliver_until_it_returns(items: list, *, deliveries: int = 6) -> tuple[int, dict]:
    """Deliver one batch task again after each kill, as django-q2 re-delivers a task whose
    worker died. Returns the kills and the outcome of the delivery that returned."""
    for kills in range(deliveries):
        try:
            return kills, tasks.moderate_batch("catalog.listing", items)
        except WorkerKilled:
            continue
    raise AssertionError(f"the task was killed on each of {deliveries} deliveries")


def test_an_attempt_is_counted_in_the_database_before_the_embedder_runs(crashing_moderation, listing_factory, photo):
    listing = listing_factory(title="Red mug CRASH", image=photo("red"))
    with pytest.raises(WorkerKilled):
        score_now(listing)
    listing.refresh_from_db()
    assert listing.moderation_status == S.PENDING
    assert listing.moderation_attempts == 1
    assert listing.moderation_started_at is not None  # no outcome was recorded


def test_a_listing_that_kills_its_worker_on_every_delivery_ends_in_error_worker_crashed(
    crashing_moderation, listing_factory, photo
):
    from datetime import timedelta

    listing = listing_factory(title="Red mug CRASH", image=photo("red"))
    kills, outcome = deliver_until_it_returns([(str(listing.pk), listing.moderation_version)])
    assert (kills, outcome) == (2, {"error": 1})  # MAX_ATTEMPTS kills, then the delivery that ends it
    listing.refresh_from_db()
    assert listing.moderation_status == S.ERROR
    assert listing.moderation_error == "worker_crashed"
    assert (listing.moderation_attempts, listing.moderation_started_at) == (2, None)
    assert listing.moderation_retry_at is None
    assert history(listing)[-1] == (S.PENDING, S.ERROR)
    # The sweeper leaves it alone, however long ago it was queued.
    Listing.objects.filter(pk=listing.pk).update(moderation_queued_at=timezone.now() - timedelta(days=1))
    assert not tasks.due_for_work(get_spec(Listing)).filter(pk=listing.pk).exists()


def test_listings_in_a_batch_with_one_that_kills_the_worker_are_scored_and_not_charged_for_its_crashes(
    crashing_moderation, listing_factory, photo
):
    """The first kill charges the whole batch (no one knows yet which listing did it);
    after that, a listing whose attempt had no outcome is scored alone, so only the
    crasher is charged again. A listing one attempt from MAX_ATTEMPTS is scored alone
    from the start: a crash of someone else's batch must not exhaust it."""
    matching = listing_factory(title="Red ceramic mug", image=photo("red", "cup"))
    mismatched = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    after_outage = listing_factory(title="Green vase", image=photo("green"))
    Listing.objects.filter(pk=after_outage.pk).update(moderation_attempts=1, moderation_error="unavailable")
    crasher = listing_factory(title="Red mug CRASH", image=photo("red", seed="crash"))
    innocent = [matching, mismatched, after_outage]
    items = [(str(x.pk), x.moderation_version) for x in [crasher, *innocent]]
    kills, _outcome = deliver_until_it_returns(items)
    assert kills == 2
    crasher.refresh_from_db()
    assert (crasher.moderation_status, crasher.moderation_error) == (S.ERROR, "worker_crashed")
    for listing in innocent:
        listing.refresh_from_db()
        assert listing.moderation_status in (S.OK, S.FLAGGED)
        assert (listing.moderation_attempts, listing.moderation_error, listing.moderation_started_at) == (0, "", None)
        assert S.ERROR not in {to for _from, to in history(listing)}
    assert mismatched.moderation_status == S.FLAGGED


def test_counting_an_attempt_writes_no_column_an_index_covers(demo_moderation, listing_factory, photo):
    """Then PostgreSQL can make it a heap-only (HOT) update, which does not re-insert the
    row into the two HNSW indexes (when its page has room: docs/pipeline.md)."""
    import re

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    listings = [listing_factory(title=f"Red mug {i}", image=photo("red", seed=str(i))) for i in range(3)]
    with CaptureQueriesContext(connection) as queries:
        transitions.start_attempt(Listing, listings)
    [update] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    written = set(re.findall(r'"(\w+)" = ', update.split(" WHERE ")[0]))
    assert written == {"moderation_attempts", "moderation_started_at"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'catalog_listing'::regclass")
        definitions = [row[0] for row in cursor.fetchall()]
    assert any("hnsw" in definition for definition in definitions)
    assert not [(column, d) for column in written for d in definitions if column in d]
    assert set(Listing.objects.values_list("moderation_attempts", flat=True)) == {1}


def test_an_embedder_wider_than_the_vector_columns_leaves_listings_pending_with_wrong_dimensions(
    settings, listing_factory, photo
):
    """Issue #10, fault 13: DIMENSIONS and an embedder of 768 without a migration: the
    columns are still halfvec(512). A recorded configuration error, not a DataError,
    not an attempt, and no embedder call spent on vectors that cannot be stored."""
    from tests.fake_provider import FakeProvider

    provider = FakeProvider(dims=768).start()
    try:
        settings.MODERATION = {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {"base_url": provider.url, "dimensions": 768},
            },
            "DIMENSIONS": 768,
        }
        listing = listing_factory(image=photo("red"))
        assert score_now(listing) == {"misconfigured": 1}
        assert listing.moderation_status == S.PENDING
        assert listing.moderation_error == "wrong_dimensions"
        assert "catalog_listing.text_vector is halfvec(512)" in listing.moderation_error_detail
        assert (listing.moderation_attempts, listing.moderation_started_at) == (0, None)
        assert listing.moderation_retry_at > timezone.now()  # retried later, by the sweeper
        assert provider.requests == []
    finally:
        provider.stop()
