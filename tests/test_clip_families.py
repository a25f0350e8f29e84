"""Every CLIP family of Immich's zoo through the local embedder, against the reference.

Each family is a random-weight model of its real architecture, exported with torch in
Immich's layout (tests/family_models.py, built once per run). For each: the token ids
(and masks, padding, pad token, context length) equal transformers' tokenizer's, the
pixels equal transformers' image processor's, and the ONNX towers give the torch
towers' vectors on the same inputs (within 1e-5: float32 kernels differ in order).

The reference tokenizers see the text with whitespace runs collapsed, as OpenCLIP's
``whitespace`` cleaning (and Immich) give it to them; SigLIP's is given the raw text,
since transformers' SiglipTokenizer canonicalizes it itself.
"""

import io
import json
import shutil
import unicodedata

import numpy as np
import pytest
from django.test import override_settings
from PIL import Image

from moderation.embedders import EmbedderConfigurationError
from moderation.embedders.onnx_clip import OnnxClipEmbedder
from moderation.models import ModerationStatus
from tests.helpers import decode_image, score_now

torch = pytest.importorskip("torch", reason="the family models are exported with torch (requirements-dev.txt)")
pytest.importorskip("sentencepiece", reason="SigLIP's and XLM-RoBERTa's reference tokenizers need sentencepiece")

from tests.family_models import FAMILIES, build_family  # noqa: E402
from tests.test_clip_reference import IMAGES  # noqa: E402

TEXTS = [
    "Red ceramic mug with a handle",
    "€20 가방!",  # the issue's: a currency sign and Korean survive SigLIP's cleaning
    unicodedata.normalize("NFD", "Crème brûlée, façade déco"),  # decomposed accents
    "빨간 머그컵 손잡이 있음",
    "taza de cerámica roja con asa",
    "🔥 Red mug 🔥 ☕️ 赤いマグカップ。",
    "",
    "  red\n\tmug   with\u00a0lid  ",
    "iPhone 13 Pro (256GB) -- it's Tom's, 100% OK!!!",
    "Vintage solid oak bookshelf with five adjustable levels, hand finished. " * 8,
]


@pytest.fixture(scope="session")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in FAMILIES}


@pytest.fixture(scope="session")
def embedders(families):
    return {name: OnnxClipEmbedder(model_dir=family.folder, threads=1) for name, family in families.items()}


def reference_encoding(family, texts):
    if family.name != "siglip":
        texts = [" ".join(text.split()) for text in texts]
    return family.tokenizer(
        texts, padding="max_length", max_length=family.context_length, truncation=True, return_tensors="np"
    )


@pytest.mark.parametrize("name", FAMILIES)
def test_token_ids_and_masks_equal_the_reference_tokenizers(families, embedders, name):
    family = families[name]
    feeds = embedders[name].textual.feeds(TEXTS)
    expected = reference_encoding(family, TEXTS)
    assert set(feeds) == set(family.text_inputs)
    ids = feeds[family.text_inputs[0]]
    assert ids.shape == (len(TEXTS), family.context_length)
    assert ids.dtype == np.int32  # as the exports declare them
    assert np.array_equal(ids, expected["input_ids"])
    if "attention_mask" in feeds:
        assert np.array_equal(feeds["attention_mask"], expected["attention_mask"])


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("image", ["non-square 3:2", "portrait", "small, upscaled", "rgba png"])
def test_pixels_equal_the_reference_image_processors(families, embedders, name, image):
    family = families[name]
    decoded = decode_image(IMAGES[image]())
    ours = embedders[name].visual.preprocess(decoded)
    expected = family.processor(Image.open(io.BytesIO(IMAGES[image]())), return_tensors="np")
    assert ours.shape == (3, 224, 224)
    assert np.array_equal(ours, expected["pixel_values"][0])


@pytest.mark.parametrize("name", FAMILIES)
def test_the_onnx_towers_give_the_torch_towers_vectors(families, embedders, name):
    from tests.test_clip_reference import photo

    family, embedder = families[name], embedders[name]
    feeds = embedder.textual.feeds(TEXTS[:4])
    images = [photo(640, 427), photo(301, 533, seed=1)]
    with torch.no_grad():
        text = family.text_tower(*(torch.from_numpy(feeds[input_name]) for input_name in family.text_inputs))
        image = family.image_tower(torch.from_numpy(np.stack([embedder.visual.preprocess(i) for i in images])))
    text, image = (v.numpy() / np.linalg.norm(v.numpy(), axis=1, keepdims=True) for v in (text, image))
    assert np.abs(embedder.embed_texts(TEXTS[:4]) - text).max() < 1e-5
    assert np.abs(embedder.embed_images(images) - image).max() < 1e-5


def test_siglip_keeps_currency_signs_korean_and_accents_the_model_reads(embedders):
    """The fault's input: "€20 가방!" lost its "€", a decomposed "é" its accent."""
    textual = embedders["siglip"].textual
    assert textual.clean("€20 가방!") == "€20 가방"
    accented = unicodedata.normalize("NFD", "Crème")
    assert textual.clean(accented) == accented.lower()


def broken_copy(families, tmp_path, name):
    return shutil.copytree(families[name].folder, tmp_path / name)


def test_a_text_tower_with_an_input_the_embedder_cannot_fill_is_refused_naming_family_and_file(families, tmp_path):
    import onnx

    folder = broken_copy(families, tmp_path, "mclip")
    graph = onnx.load(str(folder / "textual" / "model.onnx"))
    graph.graph.input[1].name = "token_type_ids"
    for node in graph.graph.node:
        node.input[:] = ["token_type_ids" if i == "attention_mask" else i for i in node.input]
    onnx.save(graph, str(folder / "textual" / "model.onnx"))
    embedder = OnnxClipEmbedder(model_dir=folder)
    with pytest.raises(EmbedderConfigurationError, match=r"XLM-Roberta.*token_type_ids") as caught:
        embedder.embed_texts(["red mug"])
    assert str(folder / "textual" / "model.onnx") in str(caught.value)
    assert caught.value.code == "model_config"


def test_an_unknown_text_cleaning_or_pad_token_is_refused_naming_the_file(families, tmp_path):
    folder = broken_copy(families, tmp_path, "siglip")
    config = json.loads((folder / "config.json").read_text())
    config["text_cfg"]["tokenizer_kwargs"]["clean"] = "ftfy"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmbedderConfigurationError, match=r"SigLIP.*'ftfy'"):
        OnnxClipEmbedder(model_dir=folder)

    folder = broken_copy(families, tmp_path / "pad", "nllb")
    tokenizer_config = json.loads((folder / "textual" / "tokenizer_config.json").read_text())
    (folder / "textual" / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, "pad_token": "[PAD]"}))
    with pytest.raises(EmbedderConfigurationError, match=r"tokenizer_config.json \(facebook/nllb.*'\[PAD\]'"):
        OnnxClipEmbedder(model_dir=folder)


def test_an_image_tower_that_takes_other_than_float_pixels_is_refused(families, tmp_path):
    import onnx

    folder = broken_copy(families, tmp_path, "openai")
    graph = onnx.load(str(folder / "visual" / "model.onnx"))
    graph.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    onnx.save(graph, str(folder / "visual" / "model.onnx"), save_as_external_data=False)
    with pytest.raises(EmbedderConfigurationError, match=r"visual/model\.onnx.*uint8"):
        OnnxClipEmbedder(model_dir=folder).embed_images([Image.new("RGB", (30, 30))])


@pytest.mark.django_db
def test_a_korean_listing_is_scored_through_the_pipeline_by_a_multilingual_model_folder(
    tmp_path_factory, listing_factory
):
    folder = build_family(
        "mclip", tmp_path_factory.mktemp("multilingual") / "XLM-Roberta-Large-Vit-B-32", dims=512
    ).folder
    options = {"model_dir": str(folder), "threads": 1}
    embedder = {"BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder", "OPTIONS": options}
    with override_settings(MODERATION={"EMBEDDER": embedder}):
        listing = listing_factory(title="빨간 머그컵 손잡이 있음", description="깨끗한 상태, €20")
        score_now(listing)
    assert listing.moderation_status in (ModerationStatus.OK, ModerationStatus.FLAGGED)
    assert listing.embedding_model == "onnx:XLM-Roberta-Large-Vit-B-32"
    assert listing.text_vector is not None
    assert listing.consistency_score is not None
