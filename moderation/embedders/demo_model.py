"""Builder of the "colour words" demo model: a tiny, hand-weighted CLIP look-alike.

No pretrained CLIP can be downloaded where this project is built and tested, so the
demo and the tests use this model. It is written in the same split ONNX layout as a
real CLIP (see ``onnx_clip``), deterministically, with no training and no download:

- the image tower measures colour: each pixel is softly assigned to the nearest of a
  few named colours, and the image's vector is the (square-rooted) share of each;
- the text tower reads colour words: each colour word adds its colour's axis, and
  every other word adds a small "neutral" axis, so no text gives a zero vector.

Both towers end in the same fixed orthonormal projection to 512 dimensions, the
width of CLIP ViT-B/32, so the database schema is the one production uses. "red mug"
agrees with a photo of a red mug and not with a blue one. It knows nothing else: it
cannot tell a mug from a shoe, so its category check is uninformative. It is a demo
model; production settings must name a real CLIP.

Building needs the ``onnx`` package (in requirements-dev.txt); using it does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODEL_ID = "demo:colour-words-v1"
DIMENSIONS = 512
IMAGE_SIZE = 64
CONTEXT_LENGTH = 32
NEUTRAL = 0.3  # weight of the neutral axis: images carry it, non-colour words add it
SHARPNESS = 60.0  # how hard a pixel is assigned to its nearest colour
BACKGROUND_SHARPNESS = 20.0  # how fast a pixel stops counting as background

# name, RGB in 0..1, other words for it
PALETTE = [
    ("red", (0.80, 0.12, 0.14), ["crimson", "scarlet", "burgundy", "maroon"]),
    ("orange", (0.94, 0.51, 0.08), ["tangerine", "amber"]),
    ("yellow", (0.96, 0.84, 0.14), ["gold", "golden", "lemon", "mustard"]),
    ("green", (0.16, 0.63, 0.24), ["olive", "lime", "emerald", "khaki"]),
    ("blue", (0.12, 0.27, 0.78), ["navy", "azure", "cobalt", "denim", "teal", "turquoise"]),
    ("purple", (0.49, 0.18, 0.65), ["violet", "lilac", "lavender", "plum"]),
    ("pink", (0.94, 0.47, 0.71), ["rose", "magenta", "fuchsia"]),
    ("brown", (0.47, 0.29, 0.16), ["tan", "beige", "chocolate", "oak", "walnut", "wooden"]),
    ("black", (0.10, 0.10, 0.11), ["dark", "ebony"]),
    ("white", (0.96, 0.96, 0.96), ["ivory", "cream"]),
    ("grey", (0.50, 0.50, 0.50), ["gray", "silver", "charcoal"]),
]


def projection() -> np.ndarray:
    """Rows of a Sylvester-Hadamard matrix: exactly orthonormal, the same on every machine."""
    hadamard = np.array([[1.0]])
    while hadamard.shape[0] < DIMENSIONS:
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    return (hadamard[1 : len(PALETTE) + 2] / np.sqrt(DIMENSIONS)).astype(np.float32)


def build_colour_words_model(folder: str | Path) -> Path:
    """Write the demo model into ``folder`` (created if needed) and return the folder."""
    folder = Path(folder)
    (folder / "visual").mkdir(parents=True, exist_ok=True)
    (folder / "textual").mkdir(parents=True, exist_ok=True)
    vocabulary = _write_tokenizer(folder / "textual")
    _save(_visual_graph(), folder / "visual" / "model.onnx")
    _save(_textual_graph(vocabulary), folder / "textual" / "model.onnx")
    _write_json(
        folder / "visual" / "preprocess_cfg.json",
        {
            "size": [IMAGE_SIZE, IMAGE_SIZE],
            "mode": "RGB",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "interpolation": "bilinear",
            "resize_mode": "squash",
        },
    )
    _write_json(
        folder / "config.json",
        {
            "model_id": MODEL_ID,
            "demo_model": True,
            "embed_dim": DIMENSIONS,
            "vision_cfg": {"image_size": IMAGE_SIZE},
            "text_cfg": {"context_length": CONTEXT_LENGTH},
        },
    )
    return folder


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_tokenizer(folder: Path) -> dict[str, int]:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocabulary = {"[PAD]": 0, "[UNK]": 1}
    for name, _rgb, synonyms in PALETTE:
        for word in [name, *synonyms]:
            vocabulary[word] = len(vocabulary)
    tokenizer = Tokenizer(WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", {"pad_token": "[PAD]", "model_max_length": CONTEXT_LENGTH})
    return vocabulary


def _visual_graph():
    from onnx import TensorProto, helper, numpy_helper

    colours = np.array([rgb for _name, rgb, _syn in PALETTE], dtype=np.float32)  # (K, 3)
    k = len(colours)
    # -|p - c|^2 = 2 p.c - |c|^2 - |p|^2, as a 1x1 convolution plus a per-pixel term.
    weights = (2 * colours).reshape(k, 3, 1, 1) * SHARPNESS
    bias = -(colours**2).sum(axis=1) * SHARPNESS
    init = [
        numpy_helper.from_array(np.float32(0.5).reshape(1), "half"),
        numpy_helper.from_array(weights.astype(np.float32), "colour_w"),
        numpy_helper.from_array(bias.astype(np.float32), "colour_b"),
        numpy_helper.from_array(np.float32(SHARPNESS).reshape(1), "sharpness"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "channel_axis"),
        numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "spatial_axes"),
        numpy_helper.from_array(np.float32(NEUTRAL).reshape(1, 1), "neutral"),
        numpy_helper.from_array(projection(), "projection"),
    ]
    nodes = [
        # Undo the (x - 0.5) / 0.5 normalisation of preprocess_cfg.json: pixels in 0..1.
        helper.make_node("Mul", ["image", "half"], ["scaled"]),
        helper.make_node("Add", ["scaled", "half"], ["pixels"]),
        helper.make_node("Conv", ["pixels", "colour_w", "colour_b"], ["dot"]),
        helper.make_node("Mul", ["pixels", "pixels"], ["squares"]),
        helper.make_node("ReduceSum", ["squares", "channel_axis"], ["norm2"], keepdims=1),
        helper.make_node("Mul", ["norm2", "sharpness"], ["norm2_scaled"]),
        helper.make_node("Sub", ["dot", "norm2_scaled"], ["closeness"]),
        helper.make_node("Softmax", ["closeness"], ["assignment"], axis=1),
        # The background is the colour of the image's border; pixels close to it count
        # little, so a white mug on a white table is still white, and a red one red.
        helper.make_node("Slice", ["pixels", "zero", "one", "row_axis"], ["top_row"]),
        helper.make_node("Slice", ["pixels", "minus_one", "end", "row_axis"], ["bottom_row"]),
        helper.make_node("Slice", ["pixels", "zero", "one", "column_axis"], ["left_column"]),
        helper.make_node("Slice", ["pixels", "minus_one", "end", "column_axis"], ["right_column"]),
        *[
            helper.make_node("ReduceMean", [edge, "spatial_axes"], [f"{edge}_mean"], keepdims=1)
            for edge in ("top_row", "bottom_row", "left_column", "right_column")
        ],
        helper.make_node(
            "Sum", ["top_row_mean", "bottom_row_mean", "left_column_mean", "right_column_mean"], ["border_sum"]
        ),
        helper.make_node("Mul", ["border_sum", "quarter"], ["border"]),
        helper.make_node("Sub", ["pixels", "border"], ["from_border"]),
        helper.make_node("Mul", ["from_border", "from_border"], ["from_border_sq"]),
        helper.make_node("ReduceSum", ["from_border_sq", "channel_axis"], ["border_distance"], keepdims=1),
        helper.make_node("Mul", ["border_distance", "minus_background_sharpness"], ["background_logit"]),
        helper.make_node("Exp", ["background_logit"], ["background_likeness"]),
        helper.make_node("Sub", ["weight_ceiling", "background_likeness"], ["pixel_weight"]),
        helper.make_node("Mul", ["assignment", "pixel_weight"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "spatial_axes"], ["weighted_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["pixel_weight", "spatial_axes"], ["weight_sum"], keepdims=0),
        helper.make_node("Div", ["weighted_sum", "weight_sum"], ["shares"]),
        # The square root keeps a small object visible next to a large background.
        helper.make_node("Sqrt", ["shares"], ["colour_part"]),
        helper.make_node("Shape", ["colour_part"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "one"], ["neutral_shape"], axis=0),
        helper.make_node("Expand", ["neutral", "neutral_shape"], ["neutral_part"]),
        helper.make_node("Concat", ["colour_part", "neutral_part"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "projection"], ["embedding"]),
    ]
    init += [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
        numpy_helper.from_array(np.array([IMAGE_SIZE], dtype=np.int64), "end"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "row_axis"),
        numpy_helper.from_array(np.array([3], dtype=np.int64), "column_axis"),
        numpy_helper.from_array(np.float32(0.25).reshape(1), "quarter"),
        numpy_helper.from_array(np.float32(-BACKGROUND_SHARPNESS).reshape(1), "minus_background_sharpness"),
        # 1.02, not 1: a plain image (all background) still has weight, and a colour.
        numpy_helper.from_array(np.float32(1.02).reshape(1), "weight_ceiling"),
    ]
    graph = helper.make_graph(
        nodes,
        "colour_words_visual",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIMENSIONS])],
        init,
    )
    return graph


def _textual_graph(vocabulary: dict[str, int]):
    from onnx import TensorProto, helper, numpy_helper

    k = len(PALETTE)
    table = np.zeros((len(vocabulary), k + 1), dtype=np.float32)
    table[vocabulary["[UNK]"], k] = NEUTRAL
    for index, (name, _rgb, synonyms) in enumerate(PALETTE):
        for word in [name, *synonyms]:
            table[vocabulary[word], index] = 1.0
    bias = np.zeros((1, k + 1), dtype=np.float32)
    bias[0, k] = NEUTRAL / 2
    init = [
        numpy_helper.from_array(table, "word_table"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "sequence_axis"),
        numpy_helper.from_array(bias, "neutral_bias"),
        numpy_helper.from_array(projection(), "projection"),
    ]
    nodes = [
        helper.make_node("Gather", ["word_table", "text"], ["words"], axis=0),
        helper.make_node("ReduceSum", ["words", "sequence_axis"], ["word_sum"], keepdims=0),
        # Even an empty text has a direction: the neutral axis.
        helper.make_node("Add", ["word_sum", "neutral_bias"], ["features"]),
        helper.make_node("MatMul", ["features", "projection"], ["embedding"]),
    ]
    return helper.make_graph(
        nodes,
        "colour_words_textual",
        [helper.make_tensor_value_info("text", TensorProto.INT32, ["batch", CONTEXT_LENGTH])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIMENSIONS])],
        init,
    )


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="listing-moderation")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
