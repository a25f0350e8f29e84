"""What a reader sees of a seller's text: invisible characters removed, visible length measured.

A title of three zero-width spaces (U+200B) is three characters to ``len`` and to
Django's MinLengthValidator, and nothing on the page; it must not pass a minimum
length or a blank check, and hidden characters must not change the embedded text.
"""

from __future__ import annotations

import unicodedata

from django.core.validators import MinLengthValidator
from django.utils.deconstruct import deconstructible
from django.utils.translation import ngettext_lazy

# Code points that draw nothing although Unicode files them as letters or marks (its
# other Default_Ignorable ones): the combining grapheme joiner, Hangul fillers, Khmer
# inherent vowels, Mongolian and other variation selectors; and the blank braille
# pattern, a favourite of blank-looking names.
IGNORABLE = frozenset(
    [
        *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0),
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
    ]
)
KEPT_CONTROLS = "\n\t"


def is_invisible(char: str) -> bool:
    """A format character (Cf: zero-width spaces and joiners U+200B-U+200D, direction
    marks and bidi controls, U+2060, U+FEFF, ...), a control character (Cc) other than
    newline and tab, or one of ``IGNORABLE``."""
    if ord(char) in IGNORABLE:
        return True
    return unicodedata.category(char) in ("Cf", "Cc") and char not in KEPT_CONTROLS


def strip_invisible(text: str) -> str:
    """``text`` without invisible characters; whitespace, newlines and tabs stay."""
    return "".join(char for char in text if not is_invisible(char))


def visible_length(text: str) -> int:
    """How many characters of ``text`` a reader sees: neither invisible nor whitespace."""
    return sum(1 for char in text if not (char.isspace() or is_invisible(char)))


@deconstructible
class MinVisibleLengthValidator(MinLengthValidator):
    """Django's MinLengthValidator counting ``visible_length``; raises ValidationError
    (code ``min_length``). With 1, it is the blank check for text that may be all invisible."""

    message = ngettext_lazy(
        "Ensure this value has at least %(limit_value)d visible character (it has %(show_value)d).",
        "Ensure this value has at least %(limit_value)d visible characters (it has %(show_value)d).",
        "limit_value",
    )

    def clean(self, x: str) -> int:
        return visible_length(x)
