"""Moderator holds: one holder at a time, renewed by its holder, ended by a decision or by time."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Listing
from moderation import holds
from tests.helpers import image_bytes

pytestmark = pytest.mark.django_db


def test_a_moderator_who_opens_an_object_holds_it_and_another_cannot_take_it(listing_factory, user_factory):
    listing, alice, bob = listing_factory(), user_factory(), user_factory()
    first = holds.hold(listing, alice)
    assert first.moderator == alice
    assert first.expires_at > timezone.now() + timedelta(seconds=250)
    assert holds.hold(listing, bob).moderator == alice
    assert set(holds.held_by_others(Listing, bob)) == {str(listing.pk)}
    assert holds.held_by_others(Listing, alice) == {}


def test_a_hold_ends_when_it_times_out_and_the_next_moderator_takes_it(listing_factory, user_factory, settings):
    listing, alice, bob = listing_factory(), user_factory(), user_factory()
    holds.hold(listing, alice, now=timezone.now() - timedelta(seconds=301))
    assert holds.held_by_others(Listing, bob) == {}
    assert holds.hold(listing, bob).moderator == bob


def test_release_ends_ones_own_hold_and_leaves_anothers(listing_factory, user_factory):
    listing, alice, bob = listing_factory(), user_factory(), user_factory()
    holds.hold(listing, alice)
    holds.release(listing, bob)
    assert holds.hold(listing, bob).moderator == alice
    holds.release(listing, alice)
    assert holds.hold(listing, bob).moderator == bob


def test_a_list_knows_who_else_holds_each_row(listing_factory, user_factory):
    held, free, alice, bob = listing_factory(), listing_factory(), user_factory(), user_factory()
    holds.hold(held, alice)
    rows = dict(holds.with_holders(Listing.objects.all(), bob).values_list("pk", "moderation_held_by"))
    assert rows == {held.pk: alice.username, free.pk: None}
    assert set(holds.with_holders(Listing.objects.all(), alice).values_list("moderation_held_by", flat=True)) == {None}


def test_release_all_ends_every_moderators_hold_on_the_object(listing_factory, user_factory):
    listing, other, alice, bob = listing_factory(), listing_factory(), user_factory(), user_factory()
    holds.hold(listing, alice)
    holds.hold(other, alice)
    holds.release_all(listing)
    assert holds.hold(listing, bob).moderator == bob
    assert set(holds.held_by_others(Listing, bob)) == {str(other.pk)}


def test_holding_an_object_ends_ones_own_holds_on_others_of_its_model_only(
    listing_factory, gadget_factory, user_factory
):
    first, second, theirs = listing_factory(), listing_factory(), listing_factory()
    gadget, alice, bob = gadget_factory(picture=image_bytes()), user_factory(), user_factory()
    holds.hold(first, alice)
    holds.hold(theirs, bob)
    holds.hold(gadget, alice)
    holds.hold(second, alice)
    assert set(holds.held_by_others(Listing, bob)) == {str(second.pk)}
    assert set(holds.held_by_others(Listing, alice)) == {str(theirs.pk)}
    assert holds.hold(gadget, bob).moderator == alice  # another model's hold stays
