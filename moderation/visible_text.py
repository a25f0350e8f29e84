"""What a reader sees of a seller's text: invisible characters removed, visible length
measured, and no bidi control that would show it in another order than it is written.

A title of three zero-width spaces (U+200B) is three characters to ``len`` and to
Django's MinLengthValidator, and nothing on the page; it must not pass a minimum
length or a blank check, and hidden characters must not change the embedded text.

Only characters that draw a glyph of their own are seen: letters, digits, punctuation
and symbols (Unicode general categories L*, N*, P*, S*) that are not
Default_Ignorable_Code_Point; and marks (M*: accents, vowel signs, a keycap) on one of
them. Nothing else is ever seen: format (Cf) and control (Cc) characters, unassigned
code points and noncharacters (Cn, drawn as nothing or as a box), private use (Co),
lone surrogates (Cs), a mark on no seen character (after a space, a no-break space, a
zero-width space, or at the start), and whitespace (Z*, which separates and is kept).
Categories are those of Python's ``unicodedata``: a character assigned by a later
Unicode version than Python's is still unassigned (Cn) here.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import MinLengthValidator
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

# The Default_Ignorable_Code_Point characters that Unicode files as letters or marks
# (the others are Cf or Cn, never seen anyway): the combining grapheme joiner, Hangul
# fillers, Khmer inherent vowels, Mongolian and other variation selectors. And the
# blank braille pattern, a symbol that draws nothing, a favourite of blank-looking names.
IGNORABLE = frozenset(
    [
        *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0),
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
    ]
)
# General categories (their first letter) of the characters that draw a glyph of their own.
SEEN_CATEGORIES = frozenset("LNPS")
KEPT_CONTROLS = "\n\t"


def strip_invisible(text: str) -> str:
    """``text`` with only what a reader sees (see the module's docstring) and whitespace:
    spaces, newlines and tabs stay, and a mark stays on the character it sits on."""
    kept = []
    on_seen = False  # whether a mark here would sit on a seen character
    for char in text:
        kind = unicodedata.category(char)[0]
        ignorable = ord(char) in IGNORABLE
        if kind == "M":
            # An ignorable mark (a variation selector) is dropped but leaves the next
            # mark on the same character.
            if on_seen and not ignorable:
                kept.append(char)
            continue
        on_seen = kind in SEEN_CATEGORIES and not ignorable
        if on_seen or kind == "Z" or char in KEPT_CONTROLS:
            kept.append(char)
    return "".join(kept)


def visible_length(text: str) -> int:
    """How many characters of ``text`` a reader sees: those ``strip_invisible`` keeps, but
    whitespace. A mark counts as one (``"e\u0301"`` is 2, as ``len`` says)."""
    return sum(1 for char in strip_invisible(text) if not char.isspace())


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


# Unicode's bidi embedding, override and isolate controls (LRE, RLE, PDF, LRO, RLO; LRI,
# RLI, FSI, PDI). Not the marks LRM, RLM and ALM (U+200E, U+200F, U+061C), which only set
# the direction of what is around them and which right-to-left sellers need.
BIDI_CONTROLS = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


@deconstructible
class ProhibitBidiControlsValidator:
    """Refuses text holding a bidi embedding, override or isolate control (``BIDI_CONTROLS``);
    raises ValidationError (code ``bidi_control``) naming the first one. With them a
    seller shows moderators text in another order than it is written: a title
    ``"\\u202egpj.exe Red mug"`` reads "gum deR exe.jpg"."""

    message = _(
        "Remove the bidi control %(character)s: it can make the text read in another order "
        "than it is written. Direction marks (U+200E, U+200F, U+061C) are allowed."
    )
    code = "bidi_control"

    def __call__(self, value: str) -> None:
        for char in value:
            if ord(char) in BIDI_CONTROLS:
                character = f"U+{ord(char):04X} {unicodedata.name(char)}"
                raise ValidationError(self.message, code=self.code, params={"character": character})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProhibitBidiControlsValidator)


@deconstructible
class ProhibitReplacementCharacterValidator:
    """Refuses text holding U+FFFD REPLACEMENT CHARACTER (ValidationError, code
    ``replacement_character``). Django decodes a query string or a form field that is not
    UTF-8 (``?q=%ED%A0%80``, ``title=Green%ffhose``) into U+FFFD rather than refusing it:
    such a query matched every photo alike, and such a title stored the bytes' loss. A
    U+FFFD sent as such is refused too: it cannot be told apart from one Django made."""

    message = _("The text is not valid UTF-8: it holds U+FFFD, what undecodable bytes become. Send it as UTF-8.")
    code = "replacement_character"

    def __call__(self, value: str) -> None:
        if "\ufffd" in value:
            raise ValidationError(self.message, code=self.code)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProhibitReplacementCharacterValidator)
