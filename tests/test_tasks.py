"""The scoring tasks in one process: outcomes, retries, the sweeper, crashed workers.
The real qcluster runs in test_qcluster.py."""

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from catalog.models import Listing
from moderation import tasks
from moderation.models import Decision, ModerationStatus
from moderation.registry import get_spec
from tests.embedders import WorkerKilled
from tests.helpers import demo_moderation_settings, history, score_now
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db
S = ModerationStatus


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


def test_a_photo_that_cannot_be_decoded_goes_to_error_with_its_code(demo_moderation, listing_factory):
    listing = listing_factory(stored_image=b"<html>not a photo</html>")
    score_now(listing)
    assert listing.moderation_status == S.ERROR
    assert listing.moderation_error == "image_format"
    assert listing.moderation_retry_at is None  # permanent: the sweeper leaves it alone
    assert listing.moderation_attempts == 1


def test_a_model_with_a_uuid_key_and_other_field_names_is_moderated(demo_moderation, gadget_factory, photo):
    gadget = gadget_factory(name="Green desk lamp", kind=Gadget.Kind.GREEN, picture=photo("green"))
    score_now(gadget)
    assert gadget.moderation_status == S.OK
    assert gadget.category_rank == 1
    assert history(gadget) == [("", S.PENDING), (S.PENDING, S.OK)]


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
        moderation_status=S.ERROR,
        moderation_queued_at=timezone.now() - timedelta(hours=1),  # queued, failed, retry due
        moderation_retry_at=timezone.now() - timedelta(seconds=1),
    )
    before = OrmQ.objects.count()
    assert tasks.sweep() == 2
    assert OrmQ.objects.count() == before + 1  # one batch task
    fresh.refresh_from_db()
    assert fresh.moderation_status == S.PENDING


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


def run_queued_batches() -> dict:
    """Run the scoring tasks waiting in the ORM broker in this process, as a worker would; returns their outcomes."""
    outcome = {}
    for queued in OrmQ.objects.order_by("id"):
        run = {
            "moderation.tasks.moderate_batch": tasks.moderate_batch,
            "moderation.tasks.moderate_object": tasks.moderate_object,
        }
        for key, value in run[queued.task["func"]](*queued.task["args"]).items():
            outcome[key] = outcome.get(key, 0) + value
        queued.delete()
    return outcome


def test_a_task_for_a_listing_in_error_scores_nothing_without_a_due_retry(crashing_moderation, listing_factory, photo):
    """Issue #10 follow-up, fault 3: a re-delivered batch task for a listing already in
    ``error``/``worker_crashed`` must not crash a worker a fourth time; a permanent
    ``image_format`` is not decoded again either."""
    crasher = listing_factory(title="Red mug CRASH", image=photo("red"))
    deliver_until_it_returns([(str(crasher.pk), crasher.moderation_version)])
    broken = listing_factory(title="Green chair", stored_image=b"not an image")
    score_now(broken)
    items = [(str(x.pk), x.moderation_version) for x in (crasher, broken)]
    assert tasks.moderate_batch("catalog.listing", items) == {"not_due": 2}  # raised WorkerKilled before
    crasher.refresh_from_db()
    broken.refresh_from_db()
    assert (crasher.moderation_status, crasher.moderation_error, crasher.moderation_attempts) == (
        S.ERROR,
        "worker_crashed",
        2,
    )
    assert (broken.moderation_error, broken.moderation_attempts) == ("image_format", 1)


def test_an_error_whose_retry_is_due_is_scored_and_one_not_yet_due_is_not(demo_moderation, listing_factory, photo):
    from datetime import timedelta

    due = listing_factory(title="Red ceramic mug", image=photo("red", "cup"))
    later = listing_factory(title="Blue kettle", image=photo("blue", "cup"))
    now = timezone.now()
    for listing, retry_at in ((due, now - timedelta(seconds=1)), (later, now + timedelta(hours=1))):
        Listing.objects.filter(pk=listing.pk).update(
            moderation_status=S.ERROR,
            moderation_error="unavailable",
            moderation_attempts=5,
            moderation_retry_at=retry_at,
        )
    assert score_now(later) == {"not_due": 1}
    assert later.moderation_status == S.ERROR
    assert score_now(due) == {"ok": 1}
    assert score_now(later, force=True) == {"ok": 1}  # a moderator's rescan


def test_the_task_the_sweeper_queues_scores_an_error_whose_retry_is_due_and_the_sweeper_leaves_it_then(
    demo_moderation, listing_factory, photo
):
    from datetime import timedelta

    listing = listing_factory(title="Red ceramic mug", image=photo("red", "cup"))
    OrmQ.objects.all().delete()
    Listing.objects.filter(pk=listing.pk).update(
        moderation_status=S.ERROR,
        moderation_error="unavailable",
        moderation_queued_at=timezone.now() - timedelta(hours=6),
        moderation_retry_at=timezone.now() - timedelta(seconds=1),
    )
    assert tasks.sweep() == 1
    assert tasks.sweep() == 0  # queued once
    assert run_queued_batches() == {"ok": 1}
    listing.refresh_from_db()
    assert listing.moderation_status == S.OK


def test_the_sweeper_queues_a_due_retry_again_when_its_task_seems_lost(demo_moderation, listing_factory, photo):
    from datetime import timedelta

    listing = listing_factory(image=photo("red"))
    now = timezone.now()
    Listing.objects.filter(pk=listing.pk).update(
        moderation_status=S.ERROR, moderation_queued_at=now - timedelta(hours=6), moderation_retry_at=now
    )
    assert tasks.sweep() == 1
    Listing.objects.filter(pk=listing.pk).update(moderation_queued_at=now - timedelta(hours=1))  # lost since
    assert tasks.sweep() == 1


def test_a_task_starts_no_embedder_call_that_could_end_after_the_queue_timeout_and_requeues_the_rest_uncharged(
    settings, listing_factory, photo
):
    """Issue #10 follow-up, fault 1: objects one attempt from MAX_ATTEMPTS are scored
    alone, one embedder call each. With a provider dripping one byte a second and a
    one-second deadline per call (worst case 2 s a call), a task within Q_CLUSTER's
    timeout of 6 s starts the calls that end before 90% of it, and re-queues the
    others without charging them an attempt."""
    import time

    from tests.fake_provider import Drip, FakeProvider

    provider = FakeProvider(dims=512).start()
    try:
        settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 6, "retry": 8}
        settings.MODERATION = {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {"base_url": provider.url, "dimensions": 512, "max_retries": 0, "deadline_seconds": 1},
            },
            "MAX_ATTEMPTS": 3,
        }
        listings = [listing_factory(title=f"Red thing {i}", image=photo("red", seed=str(i))) for i in range(8)]
        Listing.objects.update(moderation_attempts=2, moderation_error="unavailable")
        OrmQ.objects.all().delete()
        provider.drip = Drip(interval=1.0)
        started = time.monotonic()
        outcome = tasks.moderate_batch("catalog.listing", [(str(x.pk), x.moderation_version) for x in listings])
        assert time.monotonic() - started < 0.9 * 6
        tried = Listing.objects.filter(moderation_attempts=3)
        assert 0 < tried.count() < 8
        assert set(tried.values_list("moderation_status", "moderation_error")) == {(S.ERROR, "deadline_exceeded")}
        postponed = Listing.objects.exclude(pk__in=tried)
        assert outcome["postponed"] == postponed.count()
        assert set(postponed.values_list("moderation_status", "moderation_attempts", "moderation_started_at")) == {
            (S.PENDING, 2, None)
        }
        [requeued] = OrmQ.objects.all()
        assert sorted(pk for pk, _version in requeued.task["args"][1]) == sorted(
            str(pk) for pk in postponed.values_list("pk", flat=True)
        )
    finally:
        provider.stop()


def test_objects_left_when_the_budget_ends_while_looking_for_a_refused_input_give_their_attempt_back(
    settings, listing_factory, photo
):
    """The provider refuses a batch for one text: each object is then sent alone, and
    those whose call could end after the budget are re-queued with their attempt given back."""
    from tests.fake_provider import FakeProvider, Scripted

    provider = FakeProvider(dims=512).start()
    try:
        settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 6, "retry": 8}
        settings.MODERATION = {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {"base_url": provider.url, "dimensions": 512, "max_retries": 0, "deadline_seconds": 1},
            },
        }
        titles = ["Red thing REFUSED", *[f"Red thing {i}" for i in range(7)]]
        listings = [listing_factory(title=title, image=photo("red", seed=title)) for title in titles]
        OrmQ.objects.all().delete()
        provider.delay = 0.7  # a call: 0.7 s; its worst case: 2 s
        refused = Scripted(400, body={"error": "input refused"}, delay=0.7)
        provider.fail_when(lambda items: any("REFUSED" in value for kind, value in items if kind == "text"), refused)
        outcome = tasks.moderate_batch("catalog.listing", [(str(x.pk), x.moderation_version) for x in listings])
        assert Listing.objects.get(pk=listings[0].pk).moderation_error == "rejected"
        postponed = Listing.objects.filter(moderation_status=S.PENDING)
        assert 1 <= outcome["postponed"] == postponed.count() < 7
        assert set(postponed.values_list("moderation_attempts", "moderation_started_at")) == {(0, None)}
        [requeued] = OrmQ.objects.all()
        assert len(requeued.task["args"][1]) == outcome["postponed"]
    finally:
        provider.stop()


def test_a_copy_scored_before_its_original_is_rescanned_and_flagged_as_its_duplicate(
    demo_moderation, listing_factory, user_factory, photo, django_capture_on_commit_callbacks, settings
):
    """The demo's reused photo, scored by one worker just before another scored the original:
    the copy found no earlier scored photo, so the original's task queues the copy again.
    Without coalescing, so that the copy's task leaves the pending original to its own."""
    settings.MODERATION = {**demo_moderation, "COALESCE": False}
    alice, dave = user_factory(username="alice"), user_factory(username="dave")
    original = listing_factory(title="Red mug", image=photo("red", "cup"), seller=alice)
    copy = listing_factory(title="Red mug, as new", image=photo("red", "cup"), seller=dave)
    OrmQ.objects.all().delete()
    assert score_now(copy) == {"ok": 1}
    with django_capture_on_commit_callbacks(execute=True):
        assert score_now(original) == {"ok": 1, "copies_rescanned": 1}
    assert run_queued_batches() == {"flagged": 1}
    copy.refresh_from_db()
    assert (copy.moderation_status, copy.flag_reasons, copy.duplicate_of) == (
        S.FLAGGED,
        ["duplicate_image"],
        str(original.pk),
    )
    assert history(copy) == [("", "pending"), ("pending", "ok"), ("ok", "flagged")]
    with django_capture_on_commit_callbacks(execute=True):
        assert score_now(original, force=True) == {"ok": 1}  # the copy, flagged now, is left alone
