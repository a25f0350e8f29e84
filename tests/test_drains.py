"""The save path's drains: a save queues a drain of its model only when none is queued and not yet started."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.conf import Conf
from django_q.models import OrmQ

from catalog.models import Listing
from moderation import drains, tasks
from moderation.models import Drain, ModerationStatus

pytestmark = pytest.mark.django_db
S = ModerationStatus


def queued_funcs() -> list[str]:
    return [queued.task["func"] for queued in OrmQ.objects.order_by("id")]


def run_queued() -> dict:
    """Run the tasks waiting in the ORM broker in this process, oldest first, as a worker would
    (including those they queue); returns their outcomes added up."""
    outcome = {}
    while (queued := OrmQ.objects.order_by("id").first()) is not None:
        queued.delete()
        for key, value in import_string(queued.task["func"])(*queued.task["args"]).items():
            outcome[key] = outcome.get(key, 0) + value
    return outcome


def save_listings(listing_factory, photo, count: int, django_capture_on_commit_callbacks) -> list:
    listings = []
    for i in range(count):
        with django_capture_on_commit_callbacks(execute=True):  # each save its own commit
            listings.append(listing_factory(title=f"Red mug {i}", image=photo("red", "cup", seed=str(i))))
    return listings


def test_saves_while_a_drain_is_queued_and_not_started_queue_no_other_task_and_the_drain_scores_them_all(
    demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    save_listings(listing_factory, photo, 3, django_capture_on_commit_callbacks)
    assert queued_funcs() == ["moderation.tasks.drain"]
    assert run_queued()["coalesced"] == 3
    assert not Listing.objects.filter(moderation_status=S.PENDING).exists()


def test_a_save_after_the_drain_started_queues_the_next_drain(
    demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    save_listings(listing_factory, photo, 1, django_capture_on_commit_callbacks)
    drains.started("catalog.listing")  # the queued drain starts: the marker is cleared
    save_listings(listing_factory, photo, 1, django_capture_on_commit_callbacks)
    assert queued_funcs() == ["moderation.tasks.drain", "moderation.tasks.drain"]


def test_a_drain_takes_batches_until_none_wait_and_queues_its_followers_before_embedding(
    demo_moderation, settings, listing_factory, photo, django_capture_on_commit_callbacks
):
    """One drain scores the whole backlog, batch after batch, without waiting for the
    broker between them; the followers its first batch queued find nothing left."""
    settings.MODERATION = {**demo_moderation, "BATCH_SIZE": 2}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    save_listings(listing_factory, photo, 5, django_capture_on_commit_callbacks)
    [queued] = OrmQ.objects.all()
    queued.delete()
    assert tasks.drain("catalog.listing")["coalesced"] == 5
    assert queued_funcs() == ["moderation.tasks.drain"] * 2  # within follow_limit
    assert "coalesced" not in run_queued()
    assert not Listing.objects.filter(moderation_status=S.PENDING).exists()


def test_a_drain_ends_after_its_slice_and_its_followers_go_on(
    demo_moderation, settings, listing_factory, photo, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(tasks, "DRAIN_SLICE_SECONDS", 0.0)  # one batch a drain
    settings.MODERATION = {**demo_moderation, "BATCH_SIZE": 2}
    save_listings(listing_factory, photo, 5, django_capture_on_commit_callbacks)
    assert queued_funcs() == ["moderation.tasks.drain"]
    [queued] = OrmQ.objects.all()
    queued.delete()
    assert tasks.drain("catalog.listing")["coalesced"] == 2
    # The next ones, queued before this one embedded: one per BATCH_SIZE of the 3 left.
    assert queued_funcs() == ["moderation.tasks.drain"] * 2
    run_queued()
    assert not Listing.objects.filter(moderation_status=S.PENDING).exists()


def test_a_large_backlog_keeps_at_most_as_many_follow_drains_queued_as_the_cluster_has_workers(
    demo_moderation, settings, listing_factory, photo, django_capture_on_commit_callbacks
):
    """Each drain left up to two BATCH_SIZEs waiting and followed with a drain for each:
    24 listings in batches of 2 ran 22 drains, the queue growing to 11 (measured without
    the limit). Now the drains queued and not started stay within ``follow_limit`` (the
    workers, 2 here) plus the save's own, and the backlog is still scored to the last
    listing (13 drains, at most 2 queued)."""
    settings.MODERATION = {**demo_moderation, "BATCH_SIZE": 2}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    save_listings(listing_factory, photo, 24, django_capture_on_commit_callbacks)
    assert drains.follow_limit() == 2
    ran, longest = 0, 0
    while (queued := OrmQ.objects.order_by("id").first()) is not None:
        longest = max(longest, OrmQ.objects.count())
        queued.delete()
        import_string(queued.task["func"])(*queued.task["args"])
        ran += 1
    assert not Listing.objects.filter(moderation_status=S.PENDING).exists()
    assert longest <= 2 + 1
    assert ran <= 24 // 2 + 2
    assert Drain.objects.get(label="catalog.listing").followers == 0


def test_follow_drains_the_broker_lost_stop_counting_after_drain_marker_seconds(demo_moderation, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    assert drains.follow("catalog.listing", 100) == 2
    assert drains.follow("catalog.listing", 100) == 0  # neither has started
    drains.started("catalog.listing", follower=True)
    assert drains.follow("catalog.listing", 100) == 1
    Drain.objects.update(followed_at=timezone.now() - timedelta(seconds=drains.stale_after_seconds() + 1))
    assert drains.follow("catalog.listing", 100) == 2
    assert Drain.objects.get(label="catalog.listing").followers == 2


def test_a_marker_older_than_drain_marker_seconds_does_not_block_queuing(
    demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    """A drain lost by the Redis broker (or a web process killed before it queued it)
    leaves its marker set: after DRAIN_MARKER_SECONDS (10) it counts as absent. A tester
    restarted Redis when it was django-q2's retry (180 s): every save of the next three
    minutes waited."""
    Drain.objects.create(label="catalog.listing", queued_at=timezone.now() - timedelta(seconds=8))
    save_listings(listing_factory, photo, 1, django_capture_on_commit_callbacks)
    assert queued_funcs() == []  # not stale yet: that drain will come
    Drain.objects.filter(label="catalog.listing").update(queued_at=timezone.now() - timedelta(seconds=11))
    save_listings(listing_factory, photo, 1, django_capture_on_commit_callbacks)
    assert queued_funcs() == ["moderation.tasks.drain"]
    assert run_queued()["coalesced"] == 2


def test_the_sweeper_requeues_a_listing_that_never_had_a_task_of_its_own(
    demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    [listing] = save_listings(listing_factory, photo, 1, django_capture_on_commit_callbacks)
    OrmQ.objects.all().delete()  # its drain was lost
    Listing.objects.filter(pk=listing.pk).update(moderation_queued_at=timezone.now() - timedelta(minutes=11))
    assert tasks.sweep() == 1
    run_queued()
    assert Listing.objects.get(pk=listing.pk).moderation_status != S.PENDING


def test_a_failed_enqueue_clears_the_marker_so_the_next_save_queues_a_drain(demo_moderation, monkeypatch, caplog):
    monkeypatch.setattr(Conf, "ORM", None)  # django-q2's Redis broker, at a port nobody listens on
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")
    assert drains.request("catalog.listing") is False  # logged, not raised: the save succeeded
    assert "could not queue a drain of catalog.listing" in caplog.text
    assert Drain.objects.get(label="catalog.listing").queued_at is None


@pytest.mark.parametrize("setting", ["DRAIN_SAVES", "COALESCE"])
def test_with_drain_saves_or_coalescing_off_every_save_queues_its_own_task(
    demo_moderation, settings, setting, listing_factory, photo, django_capture_on_commit_callbacks
):
    settings.MODERATION = {**demo_moderation, setting: False}
    listings = save_listings(listing_factory, photo, 3, django_capture_on_commit_callbacks)
    assert queued_funcs() == ["moderation.tasks.moderate_object"] * 3
    assert [queued.task["args"][1] for queued in OrmQ.objects.order_by("id")] == [str(x.pk) for x in listings]
    assert not Drain.objects.exists()
