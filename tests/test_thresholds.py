"""Stored thresholds: they win over the settings, every change is audited, and
calibration learns them from moderators' decisions for the next scan."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog.models import Listing
from moderation import scoring, thresholds
from moderation.models import ModerationStatus, StoredThreshold, ThresholdChange
from tests.helpers import score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


def test_a_stored_threshold_wins_over_the_settings_for_its_category_only(demo_moderation):
    thresholds.set_threshold("CONSISTENCY_MIN", 0.7, model_label="catalog.listing", category="Kitchen", source="test")
    stored = thresholds.stored("catalog.listing")
    assert scoring.thresholds_for("Kitchen", stored=stored)["CONSISTENCY_MIN"] == 0.7
    assert scoring.thresholds_for("Toys", stored=stored)["CONSISTENCY_MIN"] == 0.5
    assert thresholds.stored("tests.gadget") == {}


def test_every_change_of_a_stored_threshold_is_audited_and_a_same_value_is_no_change(user_factory):
    actor = user_factory()
    thresholds.set_threshold("CONSISTENCY_MIN", 0.3, actor=actor, source="admin")
    assert thresholds.set_threshold("CONSISTENCY_MIN", 0.3, actor=actor, source="admin") is None
    thresholds.set_threshold("CONSISTENCY_MIN", 0.35, source="calibrate")
    thresholds.set_threshold("CONSISTENCY_MIN", None, actor=actor, source="admin")
    assert not StoredThreshold.objects.exists()
    assert list(ThresholdChange.objects.order_by("id").values_list("old_value", "new_value", "actor", "source")) == [
        (None, 0.3, actor.pk, "admin"),
        (0.3, 0.35, None, "calibrate"),
        (0.35, None, actor.pk, "admin"),
    ]


def test_a_threshold_saved_in_the_admin_is_audited_with_the_user(admin_client, admin_user):
    response = admin_client.post(
        "/admin/moderation/storedthreshold/add/",
        {"model_label": "", "category": "Kitchen", "key": "CONSISTENCY_MIN", "value": "0.4"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    change = ThresholdChange.objects.get()
    assert (change.category, change.new_value, change.actor, change.source) == ("Kitchen", 0.4, admin_user, "admin")


def test_calibration_moves_a_categorys_threshold_and_the_next_scan_uses_it(
    demo_moderation, listing_factory, photo, capsys
):
    listing = listing_factory(title="Red mug", image=photo("red", "cup"))
    score_now(listing)
    agreement = listing.consistency_score
    assert listing.moderation_status == S.OK
    # Decisions: moderators rejected mismatches scored just below this listing's
    # agreement and approved listings just above it.
    seller, category = listing.seller, listing.category
    decided = [(agreement - 0.02, S.REJECTED), (agreement - 0.01, S.REJECTED), (agreement + 0.01, S.APPROVED)]
    decided += [(min(agreement + 0.02, 1.0), S.APPROVED)]
    Listing.objects.bulk_create(
        [
            Listing(
                seller=seller,
                category=category,
                title=f"decided {i}",
                price=1,
                image="x.jpg",
                moderation_status=status,
                embedding_model=listing.embedding_model,
                consistency_score=score,
                flag_reasons=["text_image_mismatch"] if status == S.REJECTED else [],
            )
            for i, (score, status) in enumerate(decided)
        ]
    )
    call_command("moderation_calibrate", "--min-decisions", "4")
    assert "Run again with --apply" in capsys.readouterr().out
    assert not StoredThreshold.objects.exists()
    call_command("moderation_calibrate", "--min-decisions", "4", "--apply")
    out = capsys.readouterr().out
    assert "Kitchen" in out
    assert "Stored 1 threshold(s)" in out
    stored = StoredThreshold.objects.get()
    assert (stored.category, stored.key) == ("Kitchen", "CONSISTENCY_MIN")
    assert agreement - 0.01 < stored.value < agreement + 0.01
    assert ThresholdChange.objects.get().source == "calibrate"
    score_now(listing, force=True)
    assert (listing.moderation_status, listing.flag_reasons) == (S.FLAGGED, ["text_image_mismatch"])


def test_calibration_proposes_nothing_for_a_category_with_too_few_decisions(demo_moderation, listing_factory, capsys):
    listing = listing_factory(title="Red mug")
    Listing.objects.filter(pk=listing.pk).update(
        moderation_status=S.REJECTED, embedding_model="demo:colour-words-v1", consistency_score=0.3
    )
    call_command("moderation_calibrate", "--apply")
    assert "Kitchen: no proposal: 1 of the 30 decisions it needs." in capsys.readouterr().out
    assert not StoredThreshold.objects.exists()


def test_calibration_refuses_a_target_precision_that_is_not_a_fraction(demo_moderation):
    with pytest.raises(CommandError, match="--target-precision is a fraction"):
        call_command("moderation_calibrate", "--target-precision", "90")


def _decided(listing, category, decided):
    """Decided listings beside ``listing``: (consistency score, status, flag reasons)."""
    Listing.objects.bulk_create(
        [
            Listing(
                seller=listing.seller,
                category=category,
                title=f"decided {category} {i}",
                price=1,
                image="x.jpg",
                moderation_status=status,
                embedding_model="demo:colour-words-v1",
                consistency_score=score,
                flag_reasons=reasons,
            )
            for i, (score, status, reasons) in enumerate(decided)
        ]
    )


def test_calibration_says_per_category_why_it_changes_nothing_and_counts_what_it_left_out(
    demo_moderation, listing_factory, category_factory, capsys
):
    listing = listing_factory(title="Red mug")
    mismatch = ["text_image_mismatch"]
    # Clothing: four approvals, one kind only.
    _decided(listing, category_factory("Clothing"), [(0.6 + i / 100, S.APPROVED, []) for i in range(4)])
    # Furniture: an approval scored lower than the rejection; no threshold reaches the precision.
    furniture = [(0.2, S.APPROVED, []), (0.4, S.REJECTED, mismatch), (0.6, S.APPROVED, [])]
    furniture += [(0.45, S.REJECTED, ["category_mismatch"])] * 3
    _decided(listing, category_factory("Furniture"), furniture)
    # Toys: the current 0.5 already flags both rejections and nothing else.
    toys = [(0.3, S.REJECTED, mismatch), (0.35, S.REJECTED, mismatch), (0.6, S.APPROVED, []), (0.7, S.APPROVED, [])]
    _decided(listing, category_factory("Toys"), toys)
    call_command("moderation_calibrate", "--min-decisions", "1", "--apply")
    out = capsys.readouterr().out
    assert "14 decisions, 11 of them used; 3 rejected for other reasons than the text/photo agreement left out" in out
    assert "Clothing: no proposal: only approvals (4); it needs both kinds." in out
    assert "Furniture: 3 rejection(s) left out, rejected for other reasons than the text/photo agreement" in out
    assert "(category_mismatch 3)" in out
    assert "Furniture: no proposal: no threshold reaches a precision of 0.9." in out
    assert "Toys: keep the current threshold 0.5: 0.475 has the same precision and recall." in out
    assert "fewer than 1 decisions" not in out
    assert not StoredThreshold.objects.exists()


def test_an_audit_entrys_title_says_unset_where_there_was_no_threshold(demo_moderation):
    added = thresholds.set_threshold("CONSISTENCY_MIN", 0.5802, category="Toys", source="calibrate")
    removed = thresholds.set_threshold("CONSISTENCY_MIN", None, category="Toys", source="admin")
    assert str(added) == "CONSISTENCY_MIN (Toys): unset -> 0.5802"
    assert str(removed) == "CONSISTENCY_MIN (Toys): 0.5802 -> unset"
