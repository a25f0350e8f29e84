"""Generated CLIP-layout models for the tests, unlike the demo one, so the loader is
not tailored to one model. Random weights, fixed seeds.

- ``build_bpe_model``: 64 dimensions, a small trained BPE tokenizer, int64 token ids
  with an attention mask, a visual tower whose batch axis is fixed to 1, CLIP's mean
  and std, bicubic "shortest side" resizing.
- ``build_clip_reference_model``: Immich's ViT-B-32__openai layout and files (the real
  CLIP BPE vocabulary, 77 tokens, 224 px, ViT-B/32's preprocess_cfg.json) around two
  small towers: a 32 px patch embedding for images and, for text, a causal sum read at
  the end token (the highest id), as CLIP pools, so nothing after the first end token
  reaches the vector.
"""

import gzip
import json
from importlib import metadata
from pathlib import Path

import numpy as np

DIMS = 64
SIZE = 32
CONTEXT = 20
CORPUS = [
    "red ceramic mug with a handle",
    "blue denim jacket size m",
    "green garden hose with spray nozzle",
    "yellow toy truck for children",
    "black wireless headphones",
    "white phone charger usb c",
    "brown oak bookshelf with five levels",
    "grey fabric sofa with washable covers",
] * 20


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_bpe_model(folder: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    folder = Path(folder)
    (folder / "visual").mkdir(parents=True, exist_ok=True)
    (folder / "textual").mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<unk>"], show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.save(str(folder / "textual" / "tokenizer.json"))
    (folder / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": {"content": "<pad>"}}))
    rng = np.random.default_rng(1234)

    table = rng.standard_normal((tokenizer.get_vocab_size(), DIMS)).astype(np.float32)
    _save(
        helper.make_graph(
            [
                helper.make_node("Gather", ["table", "input_ids"], ["words"], axis=0),
                helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask3"]),
                helper.make_node("Mul", ["words", "mask3"], ["masked"]),
                helper.make_node("ReduceSum", ["masked", "seq"], ["embedding"], keepdims=0),
            ],
            "bpe_textual",
            [
                helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", CONTEXT]),
                helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", CONTEXT]),
            ],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIMS])],
            [
                numpy_helper.from_array(table, "table"),
                numpy_helper.from_array(np.array([1], np.int64), "seq"),
                numpy_helper.from_array(np.array([2], np.int64), "last"),
            ],
        ),
        folder / "textual" / "model.onnx",
    )

    weights = rng.standard_normal((3 * SIZE * SIZE, DIMS)).astype(np.float32) / 50
    _save(
        helper.make_graph(
            [
                helper.make_node("Flatten", ["pixel_values"], ["flat"]),
                helper.make_node("MatMul", ["flat", "weights"], ["image_embeds"]),
            ],
            "fixed_batch_visual",
            [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
            [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [1, DIMS])],
            [numpy_helper.from_array(weights, "weights")],
        ),
        folder / "visual" / "model.onnx",
    )
    (folder / "visual" / "preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": SIZE,
                "mean": [0.48145466, 0.4578275, 0.40821073],
                "std": [0.26862954, 0.26130258, 0.27577711],
                "interpolation": "bicubic",
                "resize_mode": "shortest",
            }
        )
    )
    (folder / "config.json").write_text(json.dumps({"embed_dim": DIMS, "text_cfg": {"context_length": CONTEXT}}))
    return folder


CLIP_VOCABULARY = "open_clip/bpe_simple_vocab_16e6.txt.gz"
CLIP_DIMS = 64
CLIP_SIZE = 224
CLIP_PATCH = 32
CLIP_CONTEXT = 77
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def clip_bpe_vocabulary() -> Path:
    """The real CLIP BPE merges (MIT), read from the open_clip_torch wheel.

    The Makefile's install step installs that wheel with --no-deps (no torch): only this
    file of it is used. Raises FileNotFoundError, naming the step, when it is missing.
    """
    try:
        path = Path(metadata.distribution("open_clip_torch").locate_file(CLIP_VOCABULARY))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"{CLIP_VOCABULARY} is not installed: run `make test` (or the Makefile's install step, "
            "`pip install --no-deps open_clip_torch==...`)."
        )
    return path


def clip_tokenizer(**options):
    """transformers' CLIPTokenizer over the real CLIP vocabulary, built as open_clip's
    SimpleTokenizer builds it from the merges file (a header line, then the merges that
    fill 49 408 ids), in HF's spelling of the two special tokens. ``options`` go to
    CLIPTokenizer (e.g. ``pad_token``)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    with gzip.open(clip_bpe_vocabulary(), "rt", encoding="utf-8") as merges_file:
        lines = merges_file.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    alphabet = list(bytes_to_unicode().values())
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), *("".join(m) for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(tokens)}, merges=merges, **options)


def build_clip_reference_model(folder: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    folder = Path(folder)
    (folder / "visual").mkdir(parents=True, exist_ok=True)
    (folder / "textual").mkdir(parents=True, exist_ok=True)

    # HF's CLIPTokenizer writes the tokenizer.json Immich ships.
    tokenizer = clip_tokenizer()
    vocab_size = len(tokenizer.get_vocab())
    tokenizer.backend_tokenizer.save(str(folder / "textual" / "tokenizer.json"))
    (folder / "textual" / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "model_max_length": CLIP_CONTEXT,
            }
        )
    )

    rng = np.random.default_rng(77)
    table = rng.standard_normal((vocab_size, CLIP_DIMS)).astype(np.float32)
    _save(
        helper.make_graph(
            [
                helper.make_node("Gather", ["table", "text"], ["words"], axis=0),
                # Position i sees tokens 0..i, as under CLIP's causal mask; the vector is
                # read at the end token, the highest id (CLIP's text.argmax(-1)).
                helper.make_node("CumSum", ["words", "sequence_axis"], ["causal"]),
                helper.make_node("Cast", ["text"], ["ids"], to=TensorProto.FLOAT),
                helper.make_node("ArgMax", ["ids"], ["end"], axis=1, keepdims=1),
                helper.make_node("Unsqueeze", ["end", "last_axis"], ["end3"]),
                helper.make_node("Expand", ["end3", "width"], ["end_index"]),
                helper.make_node("GatherElements", ["causal", "end_index"], ["pooled"], axis=1),
                helper.make_node("Squeeze", ["pooled", "sequence_axes"], ["embedding"]),
            ],
            "clip_reference_textual",
            [helper.make_tensor_value_info("text", TensorProto.INT32, ["batch", CLIP_CONTEXT])],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", CLIP_DIMS])],
            [
                numpy_helper.from_array(table, "table"),
                numpy_helper.from_array(np.array(1, np.int64), "sequence_axis"),
                numpy_helper.from_array(np.array([1], np.int64), "sequence_axes"),
                numpy_helper.from_array(np.array([2], np.int64), "last_axis"),
                numpy_helper.from_array(np.array([1, 1, CLIP_DIMS], np.int64), "width"),
            ],
        ),
        folder / "textual" / "model.onnx",
    )

    patches = rng.standard_normal((CLIP_DIMS, 3, CLIP_PATCH, CLIP_PATCH)).astype(np.float32) / CLIP_PATCH
    _save(
        helper.make_graph(
            [
                helper.make_node("Conv", ["image", "patches"], ["grid"], strides=[CLIP_PATCH, CLIP_PATCH]),
                helper.make_node("ReduceMean", ["grid", "spatial_axes"], ["embedding"], keepdims=0),
            ],
            "clip_reference_visual",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, CLIP_SIZE, CLIP_SIZE])],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", CLIP_DIMS])],
            [
                numpy_helper.from_array(patches, "patches"),
                numpy_helper.from_array(np.array([2, 3], np.int64), "spatial_axes"),
            ],
        ),
        folder / "visual" / "model.onnx",
    )
    (folder / "visual" / "preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": [CLIP_SIZE, CLIP_SIZE],
                "mode": "RGB",
                "mean": CLIP_MEAN,
                "std": CLIP_STD,
                "interpolation": "bicubic",
                "resize_mode": "shortest",
                "fill_color": 0,
            }
        )
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "embed_dim": CLIP_DIMS,
                "vision_cfg": {"image_size": CLIP_SIZE, "patch_size": CLIP_PATCH},
                "text_cfg": {"context_length": CLIP_CONTEXT, "vocab_size": vocab_size},
            }
        )
    )
    return folder
