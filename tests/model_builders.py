"""A second generated CLIP-layout model, unlike the demo one, so the loader is not
tailored to one model: 64 dimensions, a BPE tokenizer, int64 token ids with an
attention mask, a visual tower whose batch axis is fixed to 1, CLIP's mean and std,
bicubic "shortest side" resizing. Random weights, fixed seed."""

import json
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


def build_bpe_model(folder: Path) -> Path:
    import onnx
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

    def save(graph, path):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(path))

    table = rng.standard_normal((tokenizer.get_vocab_size(), DIMS)).astype(np.float32)
    save(
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
    save(
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
