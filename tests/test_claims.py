"""Coalescing: a task scores other pending objects with its own, and claims (session
advisory locks) keep two tasks from scoring the same object at once."""

import psycopg
import pytest
from django.db import connection
from django_q.models import OrmQ

from catalog.models import Listing
from moderation import tasks, transitions
from moderation.models import ModerationStatus
from tests.helpers import score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


def advisory_locks() -> int:
    """Claims this session holds (two-integer keys; the duplicate check's locks on
    pictures have single bigint keys and last until the test's transaction ends)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND pid = pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.fixture
def other_session():
    """A second database session, as another worker has."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as conn:
        yield conn


def hold(session, listing) -> None:
    session.execute("SELECT pg_advisory_lock('catalog_listing'::regclass::oid::int, hashtext(%s))", [str(listing.pk)])


def test_a_task_scores_other_pending_listings_with_its_own_and_their_tasks_end_at_once(
    demo_moderation, listing_factory, user_factory, photo, settings
):
    settings.MODERATION = {**demo_moderation, "BATCH_SIZE": 3}
    seller = user_factory()  # one seller: similar photos are not duplicates
    listings = [listing_factory(title=f"Red mug {i}", image=photo("red", seed=str(i)), seller=seller) for i in range(5)]
    first = listings[0]
    assert tasks.moderate_object("catalog.listing", str(first.pk), first.moderation_version) == {
        "coalesced": 2,
        "ok": 3,
    }
    assert Listing.objects.filter(moderation_status=S.OK).count() == 3  # BATCH_SIZE in all
    assert Listing.objects.filter(moderation_status=S.PENDING).count() == 2
    scored = Listing.objects.filter(moderation_status=S.OK).exclude(pk=first.pk).first()
    assert score_now(scored) == {"current": 1, "coalesced": 2, "ok": 2}  # it takes the last two
    assert not Listing.objects.filter(moderation_status=S.PENDING).exists()
    assert advisory_locks() == 0


def test_a_listing_claimed_by_another_task_is_left_to_it(demo_moderation, listing_factory, photo, other_session):
    listing = listing_factory(title="Red mug", image=photo("red"))
    hold(other_session, listing)
    assert score_now(listing) == {"claimed": 1}
    assert listing.moderation_status == S.PENDING
    other_session.execute("SELECT pg_advisory_unlock_all()")  # that task ended (or its worker died)
    assert score_now(listing) == {"ok": 1}
    assert advisory_locks() == 0


def test_pending_listings_claimed_elsewhere_are_not_coalesced(demo_moderation, listing_factory, photo, other_session):
    mine = listing_factory(title="Red mug", image=photo("red"))
    theirs = listing_factory(title="Blue mug", image=photo("blue"))
    hold(other_session, theirs)
    assert score_now(mine) == {"ok": 1}
    theirs.refresh_from_db()
    assert theirs.moderation_status == S.PENDING


def test_a_batch_is_filled_past_waiting_listings_that_other_tasks_hold(
    demo_moderation, listing_factory, user_factory, photo, settings, other_session
):
    settings.MODERATION = {**demo_moderation, "BATCH_SIZE": 3}
    seller = user_factory()
    mine, *waiting = [
        listing_factory(title=f"Red mug {i}", image=photo("red", seed=str(i)), seller=seller) for i in range(6)
    ]
    for listing in waiting[:2]:
        hold(other_session, listing)
    assert score_now(mine) == {"coalesced": 2, "ok": 3}
    assert Listing.objects.filter(pk__in=[x.pk for x in waiting[:2]], moderation_status=S.PENDING).count() == 2
    assert Listing.objects.filter(moderation_status=S.PENDING).count() == 3
    assert advisory_locks() == 0  # the surplus was released


def test_claims_are_released_when_the_task_fails(demo_moderation, listing_factory, photo, monkeypatch):
    listing = listing_factory(title="Red mug", image=photo("red"))

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in scoring")

    monkeypatch.setattr(tasks.scoring, "score_batch", broken)
    with pytest.raises(RuntimeError):
        score_now(listing)
    assert advisory_locks() == 0


def test_without_coalescing_a_task_takes_no_claims_and_scores_only_its_own(
    demo_moderation, listing_factory, photo, settings, other_session
):
    """For PgBouncer's transaction pooling, where session locks cannot be used."""
    settings.MODERATION = {**demo_moderation, "COALESCE": False}
    first = listing_factory(title="Red mug", image=photo("red"))
    listing_factory(title="Blue mug", image=photo("blue"))
    hold(other_session, first)  # ignored: no claims
    assert score_now(first) == {"ok": 1}
    assert Listing.objects.filter(moderation_status=S.PENDING).count() == 1


def test_an_edit_while_a_task_holds_the_claim_is_queued_again(demo_moderation, listing_factory, photo, monkeypatch):
    """The edit's own task would find the listing claimed and end; the task that held
    the claim wrote nothing for the old version, so it queues the new one."""
    listing = listing_factory(title="Red mug", image=photo("red"))
    scored_version = listing.moderation_version
    embed_and_record = tasks._embed_and_record

    def seller_edits_meanwhile(*args, **kwargs):
        edited = Listing.objects.get(pk=listing.pk)
        edited.title = "Red mug, chipped"
        edited.save()
        return embed_and_record(*args, **kwargs)

    monkeypatch.setattr(tasks, "_embed_and_record", seller_edits_meanwhile)
    queued = OrmQ.objects.count()
    assert tasks.moderate_object("catalog.listing", str(listing.pk), scored_version) == {"current": 1, "requeued": 1}
    listing.refresh_from_db()
    assert listing.moderation_status == S.PENDING
    assert listing.moderation_version == scored_version + 1
    assert OrmQ.objects.count() == queued + 1
    assert OrmQ.objects.order_by("-id").first().task["args"][1] == [(str(listing.pk), scored_version + 1)]


def test_holding_the_claim_a_task_for_an_old_version_scores_the_current_one(demo_moderation, listing_factory, photo):
    """The new version's own task may have found the listing claimed and ended."""
    listing = listing_factory(title="Blue kettle", image=photo("blue", "cup"))
    old_version = listing.moderation_version
    listing.title = "Green kettle"
    listing.save()
    outcome = tasks.moderate_object("catalog.listing", str(listing.pk), old_version)
    assert outcome == {"superseded": 1, "coalesced": 1, "flagged": 1}  # a green kettle in a blue photo
    listing.refresh_from_db()
    assert listing.moderation_status == S.FLAGGED
    decision = transitions.history(listing).first()
    assert decision.content_version == old_version + 1
    assert score_now(listing) == {"current": 1}


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
