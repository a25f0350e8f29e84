"""What a reader sees of a text: invisible characters removed, visible length measured."""

import pytest
from django.core.exceptions import ValidationError

from moderation.visible_text import (
    MinVisibleLengthValidator,
    ProhibitBidiControlsValidator,
    strip_invisible,
    visible_length,
)


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


# Titles a tester saw accepted as three visible characters: each draws nothing of its own.
DRAWN_AS_NOTHING = {
    "unassigned-2065": "\u2065\u2065\u2065",
    "unassigned-specials": "\ufff0\ufff1\ufff2",
    "unassigned-tag-block": "\U000e0fff" * 3,
    "noncharacters": "\uffff\U0010ffff\uffff",
    "unassigned-letters-block": "\u0378\u1cbc\u0378",
    "private-use": "\ue000" * 3,
    "lone-accents": "\u0301\u0301\u0301",
    "spaced-accents": " \u0301 \u0302 \u0303",
    "accents-on-nbsp": "\u00a0\u0301\u00a0\u0302\u00a0\u0303",
    "accents-after-zero-width": "\u200b\u0301\u200b\u0302\u200b\u0303",
    "lone-surrogates": "\udc80\udc81\udc82",
}


@pytest.mark.parametrize("text", DRAWN_AS_NOTHING.values(), ids=DRAWN_AS_NOTHING.keys())
def test_characters_that_draw_no_glyph_of_their_own_are_not_counted_or_embedded(text):
    assert visible_length(text) == 0
    assert strip_invisible(text).strip() == ""
    with pytest.raises(ValidationError):
        MinVisibleLengthValidator(3)(text)


@pytest.mark.parametrize(
    ("text", "length", "stripped"),
    [
        ("Cafe\u0301", 5, "Cafe\u0301"),  # an accent on its letter counts, and is embedded
        ("\u0915\u093f\u0924\u093e\u092c", 5, "\u0915\u093f\u0924\u093e\u092c"),  # Devanagari vowel signs
        ("1\ufe0f\u20e3 \u2764\ufe0f", 3, "1\u20e3 \u2764"),  # selectors dropped, the keycap mark kept
        ("\u00bfQu\u00e9? 5\u20ac", 7, "\u00bfQu\u00e9? 5\u20ac"),  # punctuation and symbols count
        ("a\u200b\u0301b", 2, "ab"),  # a mark cut from its letter by a zero-width space
        ("Red \ue000mug\U0010ffff", 6, "Red mug"),
    ],
    ids=["combining-accent", "devanagari", "emoji-selectors", "punctuation-symbols", "detached-mark", "private-use"],
)
def test_marks_count_on_a_counted_letter_and_nothing_else_is_kept_that_draws_nothing(text, length, stripped):
    assert visible_length(text) == length
    assert strip_invisible(text) == stripped


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


@pytest.mark.parametrize("control", [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))])
def test_a_bidi_embedding_override_or_isolate_control_is_refused_by_name(control):
    with pytest.raises(ValidationError) as refused:
        ProhibitBidiControlsValidator()(f"Red {control}mug")
    assert refused.value.code == "bidi_control"
    assert f"U+{ord(control):04X} " in refused.value.messages[0]


@pytest.mark.parametrize("text", ["Red mug\u200e", "\u05e1\u05e4\u05dc \u200fUSB", "\u0643\u0648\u0628\u061c 2"])
def test_direction_marks_are_allowed(text):
    ProhibitBidiControlsValidator()(text)  # LRM, RLM, ALM: right-to-left sellers need them
