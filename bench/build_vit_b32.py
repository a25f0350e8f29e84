"""Build a random-weight CLIP ViT-B/32 in the split ONNX layout, for benchmarks.

Weights do not change the cost of running a model, so a random-weight export has the
cost of the real OpenAI ViT-B/32 (224 px, 32 px patches, 12 layers; text: 77 tokens,
12 layers, width 512) without a download. The tokenizer is a BPE trained here on
listing-like text: tokenizing costs microseconds either way.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/build_vit_b32.py bench/.models/vit-b32-random
"""

import json
import sys
from pathlib import Path

CONTEXT = 77
# Where the benchmarks look for it.
MODEL_DIR = Path(__file__).resolve().parent / ".models" / "vit-b32-random"


def ensure(folder: Path = MODEL_DIR) -> Path:
    """``folder``, with the model built into it first when it is not there yet."""
    if not (folder / "config.json").exists():
        print(f"building the benchmark model in {folder} ...", flush=True)
        build(folder)
    return folder


def build(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    (folder / "visual").mkdir(parents=True, exist_ok=True)
    (folder / "textual").mkdir(parents=True, exist_ok=True)
    model = CLIPModel(CLIPConfig()).eval()  # the defaults are ViT-B/32
    vocab_size = model.config.text_config.vocab_size

    for parameter in model.parameters():
        parameter.requires_grad_(False)

    class Visual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = model

        def forward(self, image):
            return self.clip.get_image_features(pixel_values=image).pooler_output

    class Textual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = model

        def forward(self, text):
            return self.clip.get_text_features(input_ids=text.long()).pooler_output

    with torch.no_grad():
        torch.onnx.export(
            Visual().eval(),
            (torch.randn(1, 3, 224, 224),),
            str(folder / "visual" / "model.onnx"),
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
            dynamo=False,
        )
        torch.onnx.export(
            Textual().eval(),
            (torch.zeros(1, CONTEXT, dtype=torch.int32),),
            str(folder / "textual" / "model.onnx"),
            input_names=["text"],
            output_names=["embedding"],
            dynamic_axes={"text": {0: "batch"}, "embedding": {0: "batch"}},
            dynamo=False,
        )

    words = [
        "red",
        "blue",
        "green",
        "black",
        "white",
        "mug",
        "shoes",
        "jacket",
        "sofa",
        "table",
        "lamp",
        "phone",
        "charger",
        "used",
        "new",
        "size",
        "vintage",
    ]
    corpus = [" ".join(words[(i * 7 + j) % len(words)] for j in range(8)) for i in range(500)]
    tokenizer = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(
        corpus,
        trainers.BpeTrainer(vocab_size=min(1000, vocab_size), special_tokens=["<|endoftext|>"], show_progress=False),
    )
    tokenizer.save(str(folder / "textual" / "tokenizer.json"))
    (folder / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<|endoftext|>"}))
    (folder / "visual" / "preprocess_cfg.json").write_text(
        json.dumps(
            {
                "size": [224, 224],
                "mode": "RGB",
                "mean": [0.48145466, 0.4578275, 0.40821073],
                "std": [0.26862954, 0.26130258, 0.27577711],
                "interpolation": "bicubic",
                "resize_mode": "shortest",
            }
        )
    )
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_id": "bench:vit-b32-random",
                "embed_dim": 512,
                "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
                "text_cfg": {
                    "context_length": CONTEXT,
                    "vocab_size": vocab_size,
                    "width": 512,
                    "heads": 8,
                    "layers": 12,
                },
            }
        )
    )
    return folder


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/.models/vit-b32-random")))
