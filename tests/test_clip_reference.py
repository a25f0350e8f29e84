"""The local CLIP embedder against the reference implementation: equal token ids and
equal pixels, not a tolerance on cosines.

The model is Immich's ViT-B-32__openai layout with the real CLIP BPE vocabulary and
ViT-B/32's preprocess_cfg.json around small random towers (tests/model_builders.py).
The reference is transformers' CLIPTokenizer and its CLIP image processor (the PIL one:
no torch), whose defaults are openai/clip-vit-base-patch32's.
"""

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from moderation.embedders.onnx_clip import OnnxClipEmbedder
from tests.helpers import decode_image
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


@pytest.fixture(scope="module")
def reference_processor():
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil()


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


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, **options)
    return buffer.getvalue()


def photo(width: int, height: int, *, seed: int = 0) -> Image.Image:
    """Smooth colour gradients plus noise: every resampling tap counts."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=-1)
    noise = rng.normal(0, 40, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def exif_rotated(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return jpeg(image, exif=exif)


def transparent(image: Image.Image) -> bytes:
    rgba = image.convert("RGBA")
    alpha = np.zeros(image.size[::-1], dtype=np.uint8)
    alpha[:, image.width // 3 :] = 255
    alpha[: image.height // 4] = 128
    rgba.putalpha(Image.fromarray(alpha))
    return png(rgba)


IMAGES = {
    # 224 * 640 / 427 = 335.7: the reference floors to 335 and crops at 55 (round() gave 336)
    "non-square 3:2": lambda: png(photo(640, 427)),
    "portrait": lambda: png(photo(301, 533, seed=1)),
    "large": lambda: png(photo(3000, 2001, seed=2)),
    "small, upscaled": lambda: png(photo(61, 37, seed=3)),
    "exif-rotated jpeg": lambda: exif_rotated(photo(400, 250, seed=4)),
    "cmyk jpeg": lambda: jpeg(photo(350, 260, seed=5).convert("CMYK")),
    "rgba png": lambda: transparent(photo(260, 390, seed=6)),
    "greyscale": lambda: png(photo(500, 300, seed=7).convert("L")),
}


@pytest.mark.parametrize("name", list(IMAGES))
def test_pixels_equal_the_reference_image_processors(clip, reference_processor, name):
    data = IMAGES[name]()
    ours = clip.visual.preprocess(decode_image(data))
    # The reference is given the upright image as transformers' load_image makes it;
    # its processor converts the mode (transparency onto white) itself.
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    expected = reference_processor(upright, return_tensors="np")["pixel_values"][0]
    assert ours.shape == expected.shape == (3, 224, 224)
    assert ours.dtype == expected.dtype == np.float32
    assert np.array_equal(ours, expected)


def test_the_model_vector_is_the_towers_output_on_the_reference_pixels(clip, clip_model_dir, reference_processor):
    import onnxruntime as ort

    image = photo(640, 427)
    pixels = reference_processor(image, return_tensors="np")["pixel_values"]
    session = ort.InferenceSession(str(clip_model_dir / "visual" / "model.onnx"))
    bare = session.run(None, {"image": pixels})[0][0]
    assert np.allclose(clip.embed_images([image])[0], bare / np.linalg.norm(bare), atol=1e-6)
