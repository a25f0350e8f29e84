"""State changes: guarded, audited, a moderator's decision kept over a rescan, attempts counted cheaply."""

import pytest

from catalog.models import Listing
from moderation import tasks, transitions
from moderation.exceptions import InvalidTransition
from moderation.models import ModerationStatus
from tests.helpers import history, score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


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


def test_new_content_after_a_rejection_is_flagged_resubmitted_until_a_moderators_last_word_is_no_rejection(
    demo_moderation, listing_factory, photo, admin_user
):
    made = [("Red mug", "red", "cup"), ("Blue kettle", "blue", "cup"), ("Green bowl", "green", "disc")]
    made.append(("Red shoes", "red", "shoe"))
    listings = [listing_factory(title=title, image=photo(colour, shape)) for title, colour, shape in made]
    for listing in listings:
        score_now(listing)
    rejected, undone, reapproved, _untouched = listings
    for listing in (rejected, undone, reapproved):
        transitions.reject(listing, actor=admin_user, reason="counterfeit")
    transitions.undo(undone, actor=admin_user, within_seconds=60)  # the undo is the last word
    transitions.approve(reapproved, actor=admin_user)
    for listing in listings:
        listing.title += " (new)"
        listing.save()
    assert transitions.rejected_last(Listing, [listing.pk for listing in listings]) == {str(rejected.pk)}
    tasks.moderate_batch("catalog.listing", [(listing.pk, 2) for listing in listings])  # one batch
    for listing in listings:
        listing.refresh_from_db()
    assert [(listing.moderation_status, listing.flag_reasons) for listing in listings] == [
        (S.FLAGGED, ["resubmitted"]),
        (S.OK, []),
        (S.OK, []),
        (S.OK, []),
    ]
    assert history(rejected)[-1] == (S.PENDING, S.FLAGGED)
    # Edited again before a moderator looks: still the rejection's, still flagged.
    rejected.title = "Red mug, as new"
    rejected.save()
    score_now(rejected)
    assert (rejected.moderation_status, rejected.flag_reasons) == (S.FLAGGED, ["resubmitted"])
    # An approval made by mistake and undone leaves the rejection standing (a user trial).
    transitions.approve(rejected, actor=admin_user)
    transitions.undo(rejected, actor=admin_user, within_seconds=60)
    rejected.title = "Red mug, barely used"
    rejected.save()
    score_now(rejected)
    assert (rejected.moderation_status, rejected.flag_reasons) == (S.FLAGGED, ["resubmitted"])
    # A rescan of unchanged content keeps the moderator's decision and adds nothing.
    transitions.reject(rejected, actor=admin_user, reason="still counterfeit")
    score_now(rejected, force=True)
    assert rejected.moderation_status == S.REJECTED


def test_transitions_that_do_not_start_from_an_allowed_state_are_refused(
    demo_moderation, listing_factory, photo, admin_user
):
    listing = listing_factory(image=photo("red"))
    score_now(listing)
    transitions.approve(listing, actor=admin_user)
    with pytest.raises(InvalidTransition, match="approved"):
        transitions.approve(listing, actor=admin_user)


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


def test_undo_takes_back_a_moderators_own_recent_decision_and_is_audited(
    demo_moderation, listing_factory, photo, admin_user
):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    transitions.reject(listing, actor=admin_user, reason="wrong photo")
    transitions.undo(listing, actor=admin_user, within_seconds=60)
    listing.refresh_from_db()
    assert listing.moderation_status == S.FLAGGED
    last = transitions.history(listing).first()
    assert (last.from_status, last.to_status, last.actor, last.reason) == (S.REJECTED, S.FLAGGED, admin_user, "undo")
    with pytest.raises(InvalidTransition):  # an undo is no decision to undo
        transitions.undo(listing, actor=admin_user, within_seconds=60)


def test_undo_is_refused_for_another_moderators_decision_an_old_one_or_changed_content(
    demo_moderation, listing_factory, photo, admin_user, user_factory
):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    transitions.approve(listing, actor=admin_user)
    with pytest.raises(InvalidTransition):
        transitions.undo(listing, actor=user_factory(), within_seconds=60)
    with pytest.raises(InvalidTransition):
        transitions.undo(listing, actor=admin_user, within_seconds=0)
    listing.title = "Blue hiking boots"
    listing.save()  # back to pending: the decision no longer holds
    with pytest.raises(InvalidTransition):
        transitions.undo(listing, actor=admin_user, within_seconds=60)
    listing.refresh_from_db()
    assert listing.moderation_status == S.PENDING


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_rejection_without_a_reason_is_refused_and_nothing_changes(
    demo_moderation, listing_factory, photo, admin_user, reason
):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    with pytest.raises(ValueError, match="DECISION_REASONS"):
        transitions.reject(listing, actor=admin_user, reason=reason)
    listing.refresh_from_db()
    assert listing.moderation_status == S.FLAGGED
    assert history(listing)[-1] == (S.PENDING, S.FLAGGED)
