"""The signals a host hooks: flagged, decided, failed, each sent once its change commits."""

import pytest
from django.db import transaction

from catalog.models import Listing
from moderation import signals, transitions
from moderation.models import ModerationStatus
from tests.helpers import score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


@pytest.fixture
def received():
    """{signal name: [kwargs of each send]} while the test runs."""
    got = {"flagged": [], "decided": [], "failed": []}
    receivers = {}
    for name in got:

        def receive(sender, signal, _name=name, **kwargs):
            got[_name].append({"sender": sender, **kwargs})

        receivers[name] = receive
        getattr(signals, f"object_{name}").connect(receive)
    yield got
    for name, receive in receivers.items():
        getattr(signals, f"object_{name}").disconnect(receive)


def test_a_rejection_sends_decided_with_status_reason_and_actor_after_commit(
    demo_moderation, listing_factory, photo, admin_user, received, django_capture_on_commit_callbacks
):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        transitions.reject(listing, actor=admin_user, reason="misleading photo")
    assert received["decided"] == []  # not before the commit
    for callback in callbacks:
        callback()
    [sent] = received["decided"]
    assert sent["sender"] is Listing
    assert (sent["instance"].pk, sent["status"], sent["reason"], sent["actor"]) == (
        listing.pk,
        S.REJECTED,
        "misleading photo",
        admin_user,
    )
    assert sent["decision"].to_status == S.REJECTED


def test_a_decision_rolled_back_sends_nothing(
    demo_moderation, listing_factory, photo, admin_user, received, django_capture_on_commit_callbacks
):
    listing = listing_factory(image=photo("red"))
    score_now(listing)

    def decide_then_fail():
        with transaction.atomic():
            transitions.approve(listing, actor=admin_user)
            raise RuntimeError("the request failed after the decision")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        decide_then_fail()
    assert received["decided"] == []
    listing.refresh_from_db()
    assert listing.moderation_status == S.OK


def test_scoring_a_listing_as_flagged_sends_flagged_with_its_reason_codes_and_ok_sends_nothing(
    demo_moderation, listing_factory, photo, received, django_capture_on_commit_callbacks
):
    wrong = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    right = listing_factory(title="Red mug", image=photo("red", "cup"))
    with django_capture_on_commit_callbacks(execute=True):
        score_now(wrong)
        score_now(right)
        score_now(wrong, force=True)  # still flagged: not sent again
    assert [(sent["instance"].pk, sent["reasons"]) for sent in received["flagged"]] == [
        (wrong.pk, ["text_image_mismatch"])
    ]


def test_a_listing_that_cannot_be_scored_sends_failed_with_the_errors_code(
    demo_moderation, listing_factory, received, django_capture_on_commit_callbacks
):
    broken = listing_factory(stored_image=b"<html>not a photo</html>")
    with django_capture_on_commit_callbacks(execute=True):
        score_now(broken)
    assert broken.moderation_status == S.ERROR
    [sent] = received["failed"]
    assert (sent["instance"].pk, sent["code"]) == (broken.pk, broken.moderation_error)
    assert sent["detail"]


def test_a_receiver_that_raises_does_not_undo_the_decision_or_fail_the_caller(
    demo_moderation, listing_factory, photo, admin_user, django_capture_on_commit_callbacks
):
    def broken_receiver(**kwargs):
        raise ConnectionError("the mail server is down")

    signals.object_decided.connect(broken_receiver)
    try:
        listing = listing_factory(image=photo("red"))
        score_now(listing)
        with django_capture_on_commit_callbacks(execute=True):
            transitions.approve(listing, actor=admin_user)
    finally:
        signals.object_decided.disconnect(broken_receiver)
    listing.refresh_from_db()
    assert listing.moderation_status == S.APPROVED
