"""The local CLIP embedder against the reference implementation: equal token ids and
equal pixels, not a tolerance on cosines.

The model is Immich's ViT-B-32__openai layout with the real CLIP BPE vocabulary and
ViT-B/32's preprocess_cfg.json around small random towers (tests/model_builders.py).
The reference is transformers' CLIPTokenizer and its CLIP image processor (the PIL one:
no torch), whose defaults are openai/clip-vit-base-patch32's.
"""

import numpy as np
import pytest

from moderation.embedders.onnx_clip import OnnxClipEmbedder
from tests.model_builders import CLIP_CONTEXT, build_clip_reference_model

START, END = 49406, 49407

TEXTS = {
    "plain": "Red ceramic mug with a handle",
    "long": "Vintage solid oak bookshelf with five adjustable levels, hand finished. " * 8,
    "accents": "Crème brûlée ramekins, façade déco, Äpfel und Öfen, niño",
    "emoji": "🔥 Red mug 🔥 ☕️ perfect gift 👍🏽",
    "cjk": "红色陶瓷马克杯 赤いマグカップ 빨간 머그컵",
    "empty": "",
    "whitespace": "  red\n\tmug   with\u00a0lid  ",
    "punctuation": "iPhone 13 Pro Max (256GB) -- it's Tom's, 100% OK!!!",
}


@pytest.fixture(scope="module")
def clip_model_dir(tmp_path_factory):
    return build_clip_reference_model(tmp_path_factory.mktemp("models") / "ViT-B-32__reference")


@pytest.fixture(scope="module")
def clip(clip_model_dir):
    return OnnxClipEmbedder(model_dir=clip_model_dir, threads=1)


@pytest.fixture(scope="module")
def reference_tokenizer(clip_model_dir):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(clip_model_dir / "textual"))


def reference_ids(tokenizer, texts: list[str], **options) -> np.ndarray:
    encoded = tokenizer(texts, padding="max_length", max_length=CLIP_CONTEXT, truncation=True, **options)
    return np.asarray(encoded["input_ids"])


def test_token_ids_equal_the_reference_tokenizers(clip, reference_tokenizer):
    texts = list(TEXTS.values())
    ours = clip.textual.feeds(texts)["text"]
    assert ours.shape == (len(texts), CLIP_CONTEXT)
    assert np.array_equal(ours, reference_ids(reference_tokenizer, texts))
    long_row = ours[list(TEXTS).index("long")]
    assert long_row[0] == START
    assert long_row[-1] == END  # truncated, and still ended


def test_the_end_token_typed_by_a_seller_is_read_as_plain_text(clip, reference_tokenizer):
    """The fault's input: the end token only ends the sequence, and the text after it counts."""
    texts = ["red mug <|endoftext|> blue", "<|startoftext|>red mug", "red <|endoftext|><|endoftext|> mug"]
    ours = clip.textual.feeds(texts)["text"]
    assert np.array_equal(ours, reference_ids(reference_tokenizer, texts, split_special_tokens=True))
    for row in ours.tolist():
        end = row.index(END)
        assert row[end:] == [END] * (CLIP_CONTEXT - end)  # the end token, then padding
        assert START not in row[1:]
    assert reference_tokenizer.convert_tokens_to_ids("blue</w>") in ours[0]


def test_text_after_an_end_token_still_changes_the_vector(clip):
    hidden, plain, spelled_out = clip.embed_texts(["red mug <|endoftext|> blue", "red mug", "red mug blue"])
    assert hidden @ plain < 0.99
    assert not np.allclose(hidden, spelled_out)  # the token's letters are text too
