"""Scoring: consistency, the category check and the duplicate flags, from vectors alone."""

import numpy as np
import pytest

from catalog.models import Category, Listing
from moderation import scoring
from moderation.duplicates import Candidate
from moderation.models import ModerationStatus
from moderation.registry import get_spec
from tests.helpers import DEMO_THRESHOLDS, score_now
from tests.testapp.models import Gadget

S = ModerationStatus
LABELS = ["Kitchen", "Clothing", "Furniture", "Toys"]


def unit(*values) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_a_batch_is_scored_from_vectors_and_candidates_without_the_database(settings):
    """No django_db mark: any query would fail the test. The candidates are what
    ``duplicates.duplicate_candidates`` would have found in the database."""
    settings.MODERATION = {"THRESHOLDS": DEMO_THRESHOLDS}
    kitchen = Category(name="Kitchen")
    mug, boots, copy = (
        Listing(pk=pk, seller_id=seller, title=title, category=kitchen)
        for pk, seller, title in [(1, 10, "Red mug"), (2, 10, "Red boots"), (3, 20, "Red mug, used")]
    )
    # Rows: the prompts of LABELS. The boots' photo is most like Toys, then Furniture,
    # Clothing, Kitchen: the listed category ranks 4th.
    matrix = np.stack([unit(1, 0, 0), unit(0, 0.2, 1), unit(0, 0.5, 1), unit(0, 1, 0)])
    scores = scoring.score_batch(
        get_spec(Listing),
        [mug, boots, copy],
        text_vectors=[unit(1, 0, 0), unit(1, 0, 0), unit(1, 0, 0)],
        image_vectors=[unit(1, 0, 0), unit(0, 1, 0), unit(1, 0, 0)],
        phashes=[0b1011, 0b1100, 0b1011],
        labels=LABELS,
        matrix=matrix,
        concepts=None,
        candidates=[[], [Candidate("99", 0b1101, 0.97, False, (0,), "Red boots")], []],
        stored={},
    )
    assert [s.flag_reasons for s in scores] == [
        [],
        ["text_image_mismatch", "category_mismatch", "duplicate_image"],
        ["duplicate_image"],  # the mug earlier in the batch, another seller's
    ]
    assert [s.severity for s in scores] == [0, 60, 30]
    assert scores[0].consistency == pytest.approx(1.0)
    assert (scores[1].category_rank, scores[1].suggested_categories[0]["category"]) == (4, "Toys")
    assert (scores[1].duplicate_of, scores[1].duplicate_similarity) == ("99", 0.97)
    assert (scores[2].duplicate_of, scores[2].duplicate_similarity) == ("1", pytest.approx(1.0))


@pytest.mark.django_db
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


@pytest.mark.django_db
def test_a_categorys_description_is_prompted_too_so_a_photo_unlike_it_is_flagged(
    settings, demo_moderation, listing_factory, category_factory, photo
):
    """The demo model reads colours only: by their names alone every category ties."""
    settings.MODERATION = {**demo_moderation, "THRESHOLDS": {**DEMO_THRESHOLDS, "CATEGORY_MAX_RANK": 1}}
    category_factory("Kitchen", description="a red mug, a red kettle")
    category_factory("Toys", description="a blue truck")
    listing = listing_factory(title="Blue mug", image=photo("blue", "cup"), category=category_factory("Kitchen"))
    score_now(listing)
    assert listing.flag_reasons == ["category_mismatch"]
    assert [s["category"] for s in listing.suggested_categories] == ["Toys", "Kitchen"]


def test_the_category_prompts_are_the_mean_of_every_template_normalised(settings, demo_moderation):
    from moderation.embedders import get_embedder

    settings.MODERATION = {**demo_moderation, "CATEGORY_PROMPTS": ["{category}", "a photo of {category}"]}
    embedder = get_embedder()
    matrix = scoring.category_matrix(embedder, ["red", "blue"], {"blue": ["green"]})
    prompts = embedder.embed_texts(["red", "a photo of red"])
    expected = prompts.mean(axis=0) / np.linalg.norm(prompts.mean(axis=0))
    assert np.allclose(matrix[0], expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(matrix[1], scoring.category_matrix(embedder, ["red", "blue"])[1])


@pytest.mark.django_db
def test_a_prohibited_concept_on_the_photo_is_flagged_with_its_name(settings, demo_moderation, listing_factory, photo):
    concepts = [{"name": "green contraband", "prompts": ["green", "a green thing"], "threshold": 0.8}]
    settings.MODERATION = {**demo_moderation, "PROHIBITED_CONCEPTS": concepts}
    listing = listing_factory(title="Purple box", image=photo("green"))  # the text names no green
    score_now(listing)
    assert "prohibited_item" in listing.flag_reasons
    [item] = listing.prohibited_items
    assert (item["concept"], item["on"], item["threshold"]) == ("green contraband", "photo", 0.8)
    assert item["score"] >= 0.8
    innocent = listing_factory(title="Red mug", image=photo("red", "cup"))
    score_now(innocent)
    assert innocent.flag_reasons == []


def test_a_category_tied_with_others_ranks_first_and_is_suggested_first():
    """A user trial: "ranks #1" beside a suggestion list that began with another category of
    the same score."""
    from moderation.scoring import category_check

    matrix = np.array([[0.6, 0.8], [0.6, 0.8], [1.0, 0.0], [0.8, 0.6]])  # Sports and Toys tie
    check = category_check(np.array([0.6, 0.8]), "Toys", ["Sports", "Toys", "Garden", "Books"], matrix)
    assert check["category_rank"] == 1
    assert [s["category"] for s in check["suggested_categories"]] == ["Toys", "Sports", "Books"]
    below = category_check(np.array([1.0, 0.0]), "Books", ["Sports", "Toys", "Garden", "Books"], matrix)
    assert below["category_rank"] == 2
    assert [s["category"] for s in below["suggested_categories"]] == ["Garden", "Books", "Sports"]
