"""OpenCLIP's text cleaning options (tests/test_clip_families.py checks them in the tokenizers)."""

import unicodedata

from moderation.embedders.text_cleaning import canonicalize, lower, whitespace


def test_canonicalize_drops_ascii_punctuation_only():
    """The fault's inputs: "€20 가방!" kept only letters and digits, a decomposed "é" lost its accent."""
    assert canonicalize("€20 가방!") == "€20 가방"
    decomposed = unicodedata.normalize("NFD", "Crème brûlée")
    assert canonicalize(decomposed) == unicodedata.normalize("NFD", "crème brûlée")
    assert canonicalize("赤いマグ、取っ手付き。🔥") == "赤いマグ、取っ手付き。🔥"


def test_canonicalize_reads_underscores_as_spaces_and_collapses_whitespace_as_big_vision_does():
    assert canonicalize("  Red_Mug -- (NEW)!\n\tsize_M ") == "red mug new size m"


def test_whitespace_and_lower_collapse_runs_and_keep_punctuation():
    assert whitespace("  Red\n\tMug!\u00a0€20 ") == "Red Mug! €20"
    assert lower("  Red\n\tMug!  ") == "red mug!"
