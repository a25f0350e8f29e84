"""Text cleaning before a CLIP tokenizer, as OpenCLIP's ``clean`` options do it.

A model's config.json names its cleaning in ``text_cfg.tokenizer_kwargs.clean``:

- ``whitespace`` (the default, OpenCLIP's for Hugging Face tokenizers): runs of
  whitespace become one space, the ends are stripped;
- ``lower``: the same, lower-cased (OpenCLIP's for its own CLIP BPE);
- ``canonicalize`` (SigLIP's, from big_vision): underscores become spaces, ASCII
  punctuation (``string.punctuation``) is dropped, lower-cased, whitespace collapsed.
  Only ASCII punctuation: currency signs, emoji, CJK punctuation and combining accents
  are text the model reads, so "€20 가방!" is "€20 가방" and a decomposed "é" keeps
  its accent.

OpenCLIP also runs ftfy and ``html.unescape`` first; Immich and transformers' tokenizers
do not, and neither do we (no ftfy dependency; seller text is not HTML).
"""

from __future__ import annotations

import string
from collections.abc import Callable

_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def whitespace(text: str) -> str:
    return " ".join(text.split())


def lower(text: str) -> str:
    return whitespace(text).lower()


def canonicalize(text: str) -> str:
    return " ".join(text.replace("_", " ").translate(_ASCII_PUNCTUATION).lower().split())


CLEANERS: dict[str, Callable[[str], str]] = {"whitespace": whitespace, "lower": lower, "canonicalize": canonicalize}
