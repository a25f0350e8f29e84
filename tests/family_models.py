"""Random-weight models of each CLIP family's real architecture, exported with torch in
Immich's split layout, beside the reference tokenizer and image processor of each.

``build_family(name, folder, *, scale="tiny")`` writes config.json, visual/ and textual/
as Immich's exports have them, and returns a ``Family`` with the torch towers and the
transformers reference to compare against. ``scale="real"`` gives the real widths and
depths (for bench/family_cost.py: random weights cost what trained ones do).

| family | text tower (inputs) | pad, context | image tower, preprocessing |
| --- | --- | --- | --- |
| openai | CLIPTextModel, end-token pooling (``text``) | <|endoftext|>, 77 | CLIP ViT, CLIP mean/std, shortest + crop |
| siglip | SiglipTextModel, last-token pooling (``text``) | </s>, 64, canonicalize | SigLIP ViT, mean/std 0.5, squash |
| siglip2 | the same tower, Gemma tokenizer (``text``) | <pad>, 64, lower | SigLIP ViT, mean/std 0.5, squash |
| mclip | XLM-RoBERTa, masked mean + linear (``input_ids``, ``attention_mask``) | <pad>, 77 | CLIP ViT |
| nllb | NLLB (M2M100) encoder, mean over non-pad + linear (``text``) | <pad>, 77 | SigLIP ViT |

Tokenizers are trained offline on a small multilingual corpus (SentencePiece for SigLIP
and XLM-RoBERTa, BPE for Gemma and NLLB); OpenAI CLIP uses the real CLIP BPE vocabulary
(``tests.model_builders``). torch is imported here only: tests skip without it.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from tests.model_builders import CLIP_MEAN, CLIP_STD, CORPUS, clip_tokenizer

FAMILIES = ("openai", "siglip", "siglip2", "mclip", "nllb")
MULTILINGUAL_CORPUS = [
    *CORPUS[:8],
    "빨간 머그컵 손잡이 있음",
    "가방 새 상품 €20",
    "파란 청바지 재킷 M 사이즈",
    "taza de cerámica roja con asa",
    "chaqueta vaquera azul talla m",
    "赤いマグカップ、取っ手付き。",
    "红色陶瓷马克杯",
    "Crème brûlée ramekins, façade déco, Äpfel und Öfen, niño",
    "rote Keramiktasse mit Henkel",
] * 10
HALF = [0.5, 0.5, 0.5]
# The real vocabularies' sizes (CLIP BPE, SigLIP's SentencePiece, Gemma, XLM-RoBERTa,
# NLLB-200): at scale="real" the embedding tables have them, so memory is the real one
# (the small trained tokenizers use their first ids only).
REAL_VOCAB = {"openai": 49408, "siglip": 32000, "siglip2": 256000, "mclip": 250002, "nllb": 256206}


@dataclass
class Family:
    name: str
    folder: Path
    text_tower: object  # torch module: the exported text graph's inputs -> (n, dims)
    image_tower: object  # torch module: float32 (n, 3, size, size) -> (n, dims)
    tokenizer: object  # transformers' reference tokenizer
    processor: object  # transformers' reference image processor (PIL backend)
    context_length: int
    text_inputs: tuple[str, ...]


def _sentencepiece(folder: Path, *, vocab_size: int, **ids) -> Path:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(MULTILINGUAL_CORPUS),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
        **ids,
    )
    path = folder / "spiece.model"
    path.write_bytes(model.getvalue())
    return path


def _bpe(*, vocab_size: int, special: list[str], metaspace: bool = True) -> tuple[dict, list]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    if metaspace:
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tokenizer.train_from_iterator(
        [text.lower() for text in MULTILINGUAL_CORPUS],
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False),
    )
    state = json.loads(tokenizer.to_str())["model"]
    return state["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]


def _clip_tokenizer():
    tokenizer = clip_tokenizer(pad_token="<|endoftext|>")
    tokenizer.model_max_length = 77
    return tokenizer


def _tokenizer(name: str, textual: Path):
    """The reference tokenizer of a family, saved into ``textual`` as Immich ships it."""
    from transformers import PreTrainedTokenizerFast

    if name == "openai":
        reference = _clip_tokenizer()
    elif name == "siglip":
        from tokenizers import processors
        from transformers import SiglipTokenizer
        from transformers.convert_slow_tokenizer import SpmConverter

        reference = SiglipTokenizer(
            str(_sentencepiece(textual, vocab_size=400, pad_id=0, eos_id=1, unk_id=2, bos_id=-1))
        )
        # The hub's SigLIP tokenizer.json is the SentencePiece conversion: "$A </s>", no cleaning
        # (the slow tokenizer canonicalizes in Python; OpenCLIP and we in text_cleaning).
        converted = SpmConverter(reference).converted()
        converted.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        fast = PreTrainedTokenizerFast(
            tokenizer_object=converted, pad_token="</s>", eos_token="</s>", unk_token="<unk>"
        )
        fast.model_max_length = 64
        fast.save_pretrained(str(textual))
        (textual / "spiece.model").unlink()
        return reference
    elif name == "siglip2":
        from transformers import Siglip2Tokenizer

        vocab, merges = _bpe(vocab_size=500, special=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"], metaspace=False)
        # The class pads on the left; written into tokenizer_config.json, as the embedder reads it there.
        reference = Siglip2Tokenizer(vocab=vocab, merges=merges, padding_side="left")
    elif name == "mclip":
        import sentencepiece as spm
        from transformers import XLMRobertaTokenizer

        model = spm.SentencePieceProcessor(model_file=str(_sentencepiece(textual, vocab_size=400)))
        pieces = [(model.id_to_piece(i), model.get_score(i)) for i in range(3, model.get_piece_size())]
        (textual / "spiece.model").unlink()
        vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces, ("<mask>", 0.0)]
        reference = XLMRobertaTokenizer(vocab=vocab)
    else:
        from transformers import NllbTokenizer

        vocab, merges = _bpe(vocab_size=500, special=["<s>", "<pad>", "</s>", "<unk>"])
        reference = NllbTokenizer(vocab=vocab, merges=merges, src_lang="eng_Latn")
    reference.model_max_length = 64 if name.startswith("siglip") else 77
    reference.save_pretrained(str(textual))
    return reference


def _vision(kind: str, *, scale: str, dims: int):
    import torch

    if kind == "clip":
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        real = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        config = CLIPVisionConfig(
            image_size=224, patch_size=32, projection_dim=dims, **(real if scale == "real" else tiny)
        )
        model = CLIPVisionModelWithProjection(config)

        class Tower(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, image):
                return self.model(pixel_values=image).image_embeds

        return Tower().eval()

    from transformers import SiglipVisionConfig, SiglipVisionModel

    real = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
    tiny = dict(hidden_size=dims, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    model = SiglipVisionModel(SiglipVisionConfig(image_size=224, patch_size=16, **(real if scale == "real" else tiny)))

    class SiglipTower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, image):
            return self.model(pixel_values=image).pooler_output  # the attention-pooling head

    return SiglipTower().eval()


def _text(name: str, tokenizer, *, scale: str, dims: int, context: int):
    import torch

    vocab = REAL_VOCAB[name] if scale == "real" else len(tokenizer)
    width = dict(hidden_size=dims if name.startswith("siglip") else 32, intermediate_size=64)
    layers = dict(num_hidden_layers=2, num_attention_heads=2)
    if scale == "real":
        width = dict(hidden_size=768, intermediate_size=3072)
        layers = dict(num_hidden_layers=12, num_attention_heads=12)
    if name == "openai":
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        config = CLIPTextConfig(
            vocab_size=vocab,
            max_position_embeddings=context,
            projection_dim=dims,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **(
                dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
                if scale == "real"
                else {**width, **layers}
            ),
        )
        model = CLIPTextModelWithProjection(config)

        class Tower(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, text):
                return self.model(input_ids=text.long()).text_embeds

    elif name.startswith("siglip"):
        from transformers import SiglipTextConfig, SiglipTextModel

        config = SiglipTextConfig(
            vocab_size=vocab,
            max_position_embeddings=context,
            projection_size=dims,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            **width,
            **layers,
        )
        model = SiglipTextModel(config)

        class Tower(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, text):
                return self.model(input_ids=text.long()).pooler_output  # last token, no mask: SigLIP's

    elif name == "mclip":
        from transformers import XLMRobertaConfig, XLMRobertaModel

        if scale == "real":  # XLM-RoBERTa Large
            width, layers = (
                dict(hidden_size=1024, intermediate_size=4096),
                dict(num_hidden_layers=24, num_attention_heads=16),
            )
        model = XLMRobertaModel(
            XLMRobertaConfig(vocab_size=vocab, max_position_embeddings=context + 2, pad_token_id=1, **width, **layers),
            add_pooling_layer=False,
        )
        projection = torch.nn.Linear(model.config.hidden_size, dims)

        class Tower(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model, self.projection = model, projection

            def forward(self, input_ids, attention_mask):
                hidden = self.model(input_ids=input_ids.long(), attention_mask=attention_mask.long()).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                return self.projection((hidden * mask).sum(1) / mask.sum(1))  # M-CLIP's masked mean

    else:
        from transformers import M2M100Config
        from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

        if scale == "real":  # NLLB-200 distilled 600M's encoder
            width, layers = (
                dict(d_model=1024, encoder_ffn_dim=4096),
                dict(encoder_layers=12, encoder_attention_heads=16),
            )
        else:
            width, layers = dict(d_model=32, encoder_ffn_dim=64), dict(encoder_layers=2, encoder_attention_heads=2)
        config = M2M100Config(
            vocab_size=vocab, max_position_embeddings=context, pad_token_id=tokenizer.pad_token_id, **width, **layers
        )
        model = M2M100Encoder(config)
        projection = torch.nn.Linear(config.d_model, dims)
        pad_id = tokenizer.pad_token_id

        class Tower(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model, self.projection = model, projection

            def forward(self, text):
                ids = text.long()
                attention_mask = (ids != pad_id).long()  # ids alone are fed: the mask is made inside
                hidden = self.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                return self.projection((hidden * mask).sum(1) / mask.sum(1))

    return Tower().eval()


def _export(tower, inputs: dict, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # The tracer's warnings are about Python branches on shapes, fixed here by design.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            tower,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=["embedding"],
            dynamic_axes={**{name: {0: "batch"} for name in inputs}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def build_family(name: str, folder: Path, *, scale: str = "tiny", dims: int | None = None) -> Family:
    """Write a random-weight model of family ``name`` into ``folder`` (Immich's layout).

    ``dims``: the embedding width (default the family's: tiny 32 or 48, real 768 or 512).
    """
    import torch
    from transformers import CLIPImageProcessorPil, SiglipImageProcessorPil

    torch.manual_seed(FAMILIES.index(name))
    folder = Path(folder)
    textual = folder / "textual"
    textual.mkdir(parents=True, exist_ok=True)
    siglip_like = name in ("siglip", "siglip2", "nllb")
    dims = dims or ((768 if scale == "real" else 32) if siglip_like else (512 if scale == "real" else 48))
    context = 64 if name.startswith("siglip") else 77
    tokenizer = _tokenizer(name, textual)
    text_tower = _text(name, tokenizer, scale=scale, dims=dims, context=context)
    image_tower = _vision("siglip" if siglip_like else "clip", scale=scale, dims=dims)

    text_inputs = ("input_ids", "attention_mask") if name == "mclip" else ("text",)
    sample = torch.ones((2, context), dtype=torch.int32)
    _export(text_tower, {input_name: sample for input_name in text_inputs}, textual / "model.onnx")
    _export(image_tower, {"image": torch.zeros((2, 3, 224, 224))}, folder / "visual" / "model.onnx")

    clean = {"siglip": "canonicalize", "siglip2": "lower"}.get(name)
    hf_names = {
        "siglip": "timm/ViT-B-16-SigLIP",
        "siglip2": "timm/ViT-B-16-SigLIP2",
        "mclip": "M-CLIP/XLM-Roberta-Large-Vit-B-32",
        "nllb": "facebook/nllb-200-distilled-600M",
    }
    text_cfg = {"context_length": context, "vocab_size": len(tokenizer)}
    if name in hf_names:
        text_cfg["hf_tokenizer_name"] = hf_names[name]
    if clean:
        text_cfg["tokenizer_kwargs"] = {"clean": clean}
    (folder / "config.json").write_text(json.dumps({"embed_dim": dims, "text_cfg": text_cfg}))
    preprocess = {"size": [224, 224], "mode": "RGB", "fill_color": 0, "interpolation": "bicubic"}
    if siglip_like:
        preprocess.update(mean=HALF, std=HALF, resize_mode="squash")
        processor = SiglipImageProcessorPil()
    else:
        preprocess.update(mean=CLIP_MEAN, std=CLIP_STD, resize_mode="shortest")
        processor = CLIPImageProcessorPil()
    (folder / "visual" / "preprocess_cfg.json").write_text(json.dumps(preprocess))
    return Family(name, folder, text_tower, image_tower, tokenizer, processor, context, text_inputs)
