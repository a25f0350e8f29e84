"""The evaluation: a labelled set or the moderators' decisions, metrics per reason and
category at the thresholds in force, and the charts."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from catalog.demo import draw_labelled_set
from catalog.models import Listing
from moderation import evaluation, registry, thresholds, transitions
from moderation.models import ModerationStatus as S
from tests.helpers import score_now

pytestmark = pytest.mark.django_db


def test_the_shipped_labelled_set_prints_its_table_and_writes_its_charts(demo_moderation, tmp_path, capsys):
    labelled = draw_labelled_set(tmp_path / "labelled")
    call_command("moderation_evaluate", "--labelled", str(labelled), "--output-dir", str(tmp_path / "charts"))
    out = capsys.readouterr().out
    assert "colour-words demo model, not a real CLIP" in out
    assert "56 examples" in out
    assert "text_image_mismatch      56   17" in out
    for category in ("Clothing", "Furniture", "Kitchen", "Sports", "Toys"):
        assert f"\n{category} " in out
    assert "reaches precision" in out
    for name in ("pr_curve.png", "score_distribution.png"):
        with Image.open(tmp_path / "charts" / name) as chart:
            assert chart.format == "PNG"
            assert chart.width > 300


def test_the_moderators_decisions_are_a_labelled_set(
    demo_moderation, listing_factory, user_factory, moderator, photo, tmp_path, capsys
):
    wrong = listing_factory(title="Red boots", image=photo("blue", "shoe"))
    right = listing_factory(title="Red mug", image=photo("red", "cup"))
    missed = listing_factory(title="Green bowl", image=photo("green", "disc"))
    for listing in (wrong, right, missed):
        score_now(listing)
    transitions.reject(wrong, actor=moderator, reason="wrong photo")
    transitions.approve(right, actor=moderator)
    transitions.reject(missed, actor=moderator, reason="fake")  # scored ok, rejected all the same
    call_command("moderation_evaluate", "--output-dir", str(tmp_path))
    out = capsys.readouterr().out
    assert "3 examples from moderators' decisions, 2 of them to be flagged" in out
    # One of the two rejections was flagged, and what was flagged was rejected.
    assert "Kitchen                   3    2      1.00   0.50  0.67" in out
    assert Listing.objects.count() == 3
    # Edited and flagged `resubmitted` (no score: the earlier rejection), then rejected again:
    # judged by its scores like any other, and `resubmitted` is no reason with a row.
    missed.title = "Green bowl, as new"
    missed.save()
    score_now(missed)
    assert missed.flag_reasons == ["resubmitted"]
    transitions.reject(missed, actor=moderator, reason="still fake")
    call_command("moderation_evaluate", "--output-dir", str(tmp_path))
    out = capsys.readouterr().out
    assert "Kitchen                   3    2      1.00   0.50  0.67" in out
    assert "resubmitted" not in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("photo,text,category,expected\nmissing.jpg,Red mug,Kitchen,ok\n", "line 2: the photo 'missing.jpg'"),
        ("photo,text,category,expected\nx.jpg,Red mug,Kitchen,maybe\n", "line 2: expected is 'maybe'"),
        ("photo,text,category,expected\nx.jpg,Red mug,Kitchen,resubmitted\n", "line 2: expected is 'resubmitted'"),
        ("id,expected\n999999,ok\n", "line 2: there is no catalog.listing with id 999999"),
        ("title,verdict\nRed mug,ok\n", "the header needs 'expected' and 'id' or 'photo'"),
        ("id,category,expected\nabc,Furniture,ok\n", "line 2: id 'abc' is not a key of catalog.listing"),
        ("id,category,expected\n1,Kitchen,ok,extra\n", r"line 2: 4 field\(s\), but the header has 3"),
        ("id,category,expected\n1\n", r"line 2: 1 field\(s\), but the header has 3"),
        ('photo,text,category,expected\nx.jpg,"Red mug,Kitchen,ok\n', "line 2: .*a quote opened on this line is never"),
    ],
)
def test_a_labelled_set_it_cannot_use_is_refused_naming_the_line(demo_moderation, tmp_path, content, message):
    path = tmp_path / "set.csv"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("moderation_evaluate", "--labelled", str(path), "--output-dir", str(tmp_path / "charts"))
    assert not (tmp_path / "charts").exists()


def test_an_id_row_whose_category_is_not_its_objects_is_refused_naming_both(
    demo_moderation, listing_factory, photo, tmp_path
):
    listing = listing_factory(title="Red mug", image=photo("red", "cup"))
    score_now(listing)
    path = tmp_path / "set.csv"
    path.write_text(f"id,category,expected\n{listing.pk},Kitchen,ok\n{listing.pk},Furniture,ok\n")
    with pytest.raises(
        CommandError, match=f"line 3: category is 'Furniture', but catalog.listing {listing.pk} is in 'Kitchen'"
    ):
        call_command("moderation_evaluate", "--labelled", str(path), "--output-dir", str(tmp_path / "charts"))
    assert not (tmp_path / "charts").exists()


def test_stored_objects_are_judged_at_the_thresholds_in_force_for_their_category_not_their_stored_flags(
    demo_moderation, listing_factory, category_factory, tmp_path, capsys
):
    # Toys held at 0.75 after calibration; #13 was rescanned after the change, #30 was scored before it.
    thresholds.set_threshold("CONSISTENCY_MIN", 0.75, model_label="catalog.listing", category="Toys", source="test")
    toys = category_factory("Toys")
    rescanned = listing_factory(title="Red ball", category=toys)
    earlier = listing_factory(title="Red kite", category=toys)
    Listing.objects.filter(pk=rescanned.pk).update(
        moderation_status=S.FLAGGED, consistency_score=0.744, flag_reasons=["text_image_mismatch"]
    )
    Listing.objects.filter(pk=earlier.pk).update(moderation_status=S.OK, consistency_score=0.733, flag_reasons=[])
    path = tmp_path / "set.csv"
    path.write_text(f"id,category,expected\n{rescanned.pk},Toys,ok\n{earlier.pk},Toys,ok\n")
    examples = evaluation.labelled_examples(path, registry.get_spec(Listing), embedder=None)
    assert [e.scores.flag_reasons for e in examples] == [["text_image_mismatch"], ["text_image_mismatch"]]
    assert [e.scores.thresholds["CONSISTENCY_MIN"] for e in examples] == [0.75, 0.75]
    call_command("moderation_evaluate", "--labelled", str(path), "--output-dir", str(tmp_path / "charts"))
    out = capsys.readouterr().out
    assert "CONSISTENCY_MIN in force: Toys 0.75" in out
    assert "CONSISTENCY_MIN for every category (global; now 0.5)" in out
    assert "moderation_calibrate" in out


def test_decisions_are_judged_at_the_thresholds_in_force_for_their_category_not_their_stored_flags(
    demo_moderation, listing_factory, category_factory
):
    thresholds.set_threshold("CONSISTENCY_MIN", 0.75, model_label="catalog.listing", category="Toys", source="test")
    earlier = listing_factory(title="Red kite", category=category_factory("Toys"))
    Listing.objects.filter(pk=earlier.pk).update(
        moderation_status=S.APPROVED, embedding_model="demo:colour-words-v1", consistency_score=0.733, flag_reasons=[]
    )
    [example] = evaluation.decision_examples(registry.get_spec(Listing), model_id="demo:colour-words-v1")
    assert (example.expected, example.scores.flag_reasons) == (set(), ["text_image_mismatch"])
