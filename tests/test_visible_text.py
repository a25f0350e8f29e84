"""What a reader sees of a text: invisible characters removed, visible length measured."""

import pytest
from django.core.exceptions import ValidationError

from moderation.visible_text import MinVisibleLengthValidator, strip_invisible, visible_length


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("Red mug", "Red mug"),
        ("Red\u200b mug\ufeff", "Red mug"),
        ("\u202eRed\u202c \u2066mug\u2069", "Red mug"),
        ("Red\x00\x01\x7f mug", "Red mug"),
        ("Red\nmug\twith lid", "Red\nmug\twith lid"),
        ("\u3164\u115f\ufe0f\u034f", ""),
    ],
    ids=["plain", "zero-width", "bidi", "controls", "newline-and-tab-kept", "fillers-and-selectors"],
)
def test_invisible_characters_are_stripped_and_whitespace_kept(text, visible):
    assert strip_invisible(text) == visible


def test_the_visible_length_counts_neither_invisible_characters_nor_whitespace():
    assert visible_length("\u200b\u200b\u200b") == 0
    assert visible_length(" \u200b \u3000\u00a0\n") == 0
    assert visible_length("a\u200b b") == 2
    assert visible_length("Ünïcödé") == 7


def test_the_minimum_visible_length_names_the_visible_count():
    MinVisibleLengthValidator(3)("Mug")
    with pytest.raises(ValidationError) as raised:
        MinVisibleLengthValidator(3)("\u200b\u200b\u200b")
    assert raised.value.messages == ["Ensure this value has at least 3 visible characters (it has 0)."]
    assert raised.value.code == "min_length"


@pytest.mark.django_db
def test_hidden_characters_do_not_change_the_embedded_text_or_its_vector(listing_factory, demo_moderation, photo):
    from moderation.registry import get_spec
    from tests.helpers import score_now

    plain = listing_factory(title="Red mug", description="Blue lid", image=photo("red", "cup"))
    hidden = listing_factory(
        title="R\u200bed\u2060 mug\ufeff", description="\u202eBlue\u202c l\u00adid", image=photo("red", "cup")
    )
    assert get_spec(plain).text_of(hidden) == get_spec(plain).text_of(plain) == "Red mug. Blue lid"
    for listing in (plain, hidden):
        score_now(listing)
    assert list(hidden.text_vector) == list(plain.text_vector)
