"""The local ONNX Runtime backend, on the demo model and on a second, different model."""

import functools
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort
import pytest
from django.test import override_settings
from PIL import Image

from catalog.demo import draw_photo
from moderation.embedders import EmbedderConfigurationError, get_embedder
from moderation.embedders.onnx_clip import ClipVisual, OnnxClipEmbedder
from tests.helpers import decode_image


def photo(colour: str, shape: str = "cup") -> Image.Image:
    return decode_image(draw_photo(colour, shape, seed=colour))


@pytest.fixture(scope="module")
def demo(demo_model_dir):
    return OnnxClipEmbedder(model_dir=demo_model_dir, threads=1)


def test_the_demo_model_has_clip_vit_b32_width_and_names_itself(demo):
    assert demo.dimensions == 512
    assert demo.model_id == "demo:colour-words-v1"


def test_red_mug_agrees_more_with_a_red_photo_than_with_a_blue_one(demo):
    text = demo.embed_texts(["Red ceramic mug"])[0]
    red_photo, blue_photo = demo.embed_images([photo("red"), photo("blue")])
    assert text @ red_photo > text @ blue_photo + 0.3


def test_every_colour_finds_its_own_photo(demo):
    colours = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey"]
    texts = demo.embed_texts([f"{colour} item" for colour in colours])
    images = demo.embed_images([photo(colour, "box") for colour in colours])
    assert list((texts @ images.T).argmax(axis=1)) == list(range(len(colours)))


def test_text_without_colour_words_never_gives_a_zero_vector(demo):
    vectors = demo.embed_texts(["vintage mug", "", "!!!"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batches_larger_than_the_batch_size_keep_their_order(demo_model_dir):
    embedder = OnnxClipEmbedder(model_dir=demo_model_dir, batch_size=2)
    colours = ["red", "blue", "green", "yellow", "black"]
    one_by_one = np.stack([embedder.embed_images([photo(c)])[0] for c in colours])
    assert np.allclose(embedder.embed_images([photo(c) for c in colours]), one_by_one, atol=1e-6)


@pytest.fixture(scope="module")
def bpe(bpe_model_dir):
    return OnnxClipEmbedder(model_dir=bpe_model_dir)


def test_a_different_model_loads_with_its_own_dimension_tokenizer_and_inputs(bpe):
    assert bpe.dimensions == 64
    assert bpe.model_id == "onnx:bpe-64"
    texts = bpe.embed_texts(["red ceramic mug", "grey sofa", "an unseen phrase entirely"])
    images = bpe.embed_images([photo("red"), Image.new("RGB", (300, 120), (0, 90, 0))])
    assert texts.shape == (3, 64)
    assert images.shape == (2, 64)
    assert bpe.textual.tokenizer.to_str()
    assert '"type":"BPE"' in bpe.textual.tokenizer.to_str().replace(" ", "")
    feeds = bpe.textual.feeds(["red mug"])
    assert set(feeds) == {"input_ids", "attention_mask"}
    assert feeds["input_ids"].dtype == np.int64
    assert feeds["input_ids"].shape == (1, 20)


def test_preprocessing_follows_the_models_own_config(bpe, bpe_model_dir):
    """Shortest side to 32 (bicubic), centre crop, CLIP mean/std, in the reference's geometry.

    302 x 120 is the fault's case: 32 * 302 / 120 = 80.53, which the reference floors
    to 80 (round() made 81) and crops at (80 - 32) // 2 = 24 (not a fractional box).
    """
    image = Image.effect_noise((302, 120), 80).convert("RGB")
    resized = image.resize((80, 32), Image.Resampling.BICUBIC).crop((24, 0, 56, 32))
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    reference = ((np.asarray(resized, dtype=np.float64) / 255 - mean) / std).transpose(2, 0, 1)
    ours = bpe.visual.preprocess(image)
    assert ours.shape == (3, 32, 32)
    assert ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-6  # float32 rounding only

    session = ort.InferenceSession(str(bpe_model_dir / "visual" / "model.onnx"))
    bare = session.run(None, {"pixel_values": ours[None].astype(np.float32)})[0][0]
    expected = bare / np.linalg.norm(bare)
    assert np.allclose(bpe.embed_images([image])[0], expected, atol=1e-5)


def visual_tower(bpe_model_dir, tmp_path, **preprocess_cfg) -> ClipVisual:
    """The bpe model's image tower with other preprocessing settings (resizing only: the tower is not run)."""
    folder = shutil.copytree(bpe_model_dir / "visual", tmp_path / "visual")
    cfg = json.loads((folder / "preprocess_cfg.json").read_text())
    (folder / "preprocess_cfg.json").write_text(json.dumps({**cfg, **preprocess_cfg}))
    return ClipVisual(folder, threads=None, providers=None, batch_size=1)


def test_longest_mode_fits_the_photo_as_open_clip_does_its_rounding_included(bpe_model_dir, tmp_path):
    """open_clip's 9 / (576 / 224) is 3.4999..., so 3 pixels wide; 9 * (224 / 576) is 3.5 and rounded to 4."""
    visual = visual_tower(bpe_model_dir, tmp_path, size=224, resize_mode="longest")
    image = Image.effect_noise((9, 576), 80).convert("RGB")
    expected = Image.new("RGB", (224, 224), (0, 0, 0))
    expected.paste(image.resize((3, 224), Image.Resampling.BICUBIC), ((224 - 3) // 2, 0))
    assert np.array_equal(np.asarray(visual.resize(image)), np.asarray(expected))


def test_a_strip_photo_is_cropped_in_the_reference_geometry_without_being_resized_whole(bpe_model_dir, tmp_path):
    """Past 32:1 only the crop's box is resampled; a 2 x 40 000 strip would otherwise grow to 32 x 640 000 first."""
    visual = visual_tower(bpe_model_dir, tmp_path)
    assert visual.preprocess(Image.new("RGB", (2, 40_000), (200, 30, 30))).shape == (3, 32, 32)
    # 10 x 400 resizes to 32 x 1280 (40:1): close to the reference's pixels on a smooth photo.
    y = np.linspace(0, 255, 400)[:, None, None]
    strip = Image.fromarray(np.broadcast_to(np.concatenate([y, 255 - y, y / 2], axis=2), (400, 10, 3)).astype(np.uint8))
    reference = np.asarray(strip.resize((32, 1280), Image.Resampling.BICUBIC).crop((0, 624, 32, 656)), dtype=float)
    assert np.abs(np.asarray(visual.resize(strip), dtype=float) - reference).max() <= 2


def test_special_tokens_typed_by_a_seller_are_plain_text(bpe):
    """ "<pad>" in a title is the letters, not the pad token, which only padding may put in."""
    pad_id = bpe.textual.tokenizer.token_to_id("<pad>")
    feeds = bpe.textual.feeds(["red <pad> mug", "<pad><pad> grey sofa"])
    typed = feeds["input_ids"][feeds["attention_mask"] == 1]
    assert pad_id not in typed
    assert (feeds["input_ids"][feeds["attention_mask"] == 0] == pad_id).all()


def test_added_tokens_not_marked_special_are_plain_text_too(bpe_model_dir, tmp_path):
    """Some tokenizer.json files leave a control token such as "</s>" unmarked; it is neutralised all the same."""
    from tokenizers import AddedToken, Tokenizer

    folder = shutil.copytree(bpe_model_dir, tmp_path / "bpe-unmarked")
    tokenizer = Tokenizer.from_file(str(folder / "textual" / "tokenizer.json"))
    tokenizer.add_tokens([AddedToken("</s>", special=False)])
    tokenizer.save(str(folder / "textual" / "tokenizer.json"))
    end_id = tokenizer.token_to_id("</s>")

    embedder = OnnxClipEmbedder(model_dir=folder)
    feeds = embedder.textual.feeds(["red mug </s> blue jacket"])
    assert end_id not in feeds["input_ids"]
    assert embedder.textual.tokenizer.token_to_id("</s>") == end_id  # still the model's own id for its own use


def test_a_missing_model_folder_names_the_setting_to_change(tmp_path):
    with pytest.raises(EmbedderConfigurationError, match=r"OPTIONS'\]\['model_dir'\]"):
        OnnxClipEmbedder(model_dir=tmp_path / "nothing-here")


def test_without_a_local_model_and_no_download_allowed_the_error_says_how_to_fix_it(tmp_path):
    with pytest.raises(EmbedderConfigurationError, match="allow_download") as caught:
        OnnxClipEmbedder(cache_dir=tmp_path)
    assert "immich-app/ViT-B-32__openai" in str(caught.value)
    assert caught.value.code == "model_missing"


def test_a_provider_that_is_not_available_is_a_configuration_error(demo_model_dir):
    embedder = OnnxClipEmbedder(model_dir=demo_model_dir, providers=["NoSuchExecutionProvider"])
    with pytest.raises(EmbedderConfigurationError, match="NoSuchExecutionProvider"):
        embedder.embed_texts(["red"])


@pytest.fixture
def model_hub(tmp_path, demo_model_dir):
    """A model hub on 127.0.0.1 that serves the demo model at <repo>/resolve/main/<file>."""
    shutil.copytree(demo_model_dir, tmp_path / "hub" / "acme" / "colour-words" / "resolve" / "main")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "hub"))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_named_model_is_downloaded_once_with_a_progress_bar_when_allowed(tmp_path, model_hub, capsys):
    cache = tmp_path / "cache"
    embedder = OnnxClipEmbedder(
        model_name="colour-words",
        hub_repo="acme/colour-words",
        hub_url=model_hub,
        cache_dir=cache,
        allow_download=True,
    )
    assert (cache / "colour-words" / "visual" / "model.onnx").is_file()
    assert "model.onnx" in capsys.readouterr().err  # tqdm's bar
    assert embedder.embed_texts(["red"]).shape == (1, 512)
    again = OnnxClipEmbedder(model_name="colour-words", cache_dir=cache, hub_url="http://127.0.0.1:9")
    assert again.dimensions == 512
    assert [p.name for p in cache.iterdir()] == ["colour-words"]  # no staging folder left behind


def test_a_failed_download_leaves_nothing_and_says_what_to_do(tmp_path, model_hub):
    with pytest.raises(EmbedderConfigurationError, match="model_dir"):
        OnnxClipEmbedder(model_name="absent", hub_url=model_hub, cache_dir=tmp_path / "cache", allow_download=True)
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_backend_is_chosen_by_dotted_path_in_settings(demo_model_dir):
    config = {"BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder", "OPTIONS": {"model_dir": demo_model_dir}}
    with override_settings(MODERATION={"EMBEDDER": config}):
        embedder = get_embedder()
        assert embedder.model_id == "demo:colour-words-v1"
        assert get_embedder() is embedder  # built once, kept warm
    with (
        override_settings(MODERATION={"EMBEDDER": {"BACKEND": "moderation.nope.Embedder"}}),
        pytest.raises(EmbedderConfigurationError, match="cannot be imported"),
    ):
        get_embedder()
