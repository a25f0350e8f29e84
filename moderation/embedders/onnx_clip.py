"""Local CLIP on ONNX Runtime, in the split layout that Immich publishes.

A model folder holds::

    config.json                    embed_dim, text_cfg.context_length, ...
    visual/model.onnx              image tower: float32 NCHW "image" -> (n, embed_dim)
    visual/preprocess_cfg.json     size, mean, std, interpolation, resize_mode
    textual/model.onnx             text tower: int32/int64 "text" ids, or "input_ids" and
                                   "attention_mask" (M-CLIP), (n, context_length) -> (n, embed_dim)
    textual/tokenizer.json         a `tokenizers` tokenizer
    textual/tokenizer_config.json  pad_token, padding_side

Preprocessing and tokenizing are read from the model's own files, never hard-coded, so
every family of Immich's zoo works (OpenAI CLIP, OpenCLIP, SigLIP, SigLIP2, M-CLIP,
NLLB-CLIP; docs/embedders.md), and one this embedder cannot feed is refused. Each
tower is one class; both load lazily, once per process (and again after a fork), and
stay warm.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from . import text_cleaning
from .base import Embedder, EmbedderConfigurationError

logger = logging.getLogger("moderation.embedders")

MODEL_FILES = (
    "config.json",
    "visual/preprocess_cfg.json",
    "visual/model.onnx",
    "textual/tokenizer.json",
    "textual/tokenizer_config.json",
    "textual/model.onnx",
)
DEFAULT_MODEL_NAME = "ViT-B-32__openai"
DEFAULT_CACHE_DIR = Path(os.environ.get("MODERATION_MODEL_CACHE", Path.home() / ".cache" / "listing-moderation"))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmbedderConfigurationError(f"Cannot read the model file {path}: {exc}.", code="model_missing") from exc


class _Tower:
    """One ONNX session, created on first use in each process."""

    def __init__(self, path: Path, *, threads: int | None, providers: list[str] | None, batch_size: int) -> None:
        self.path = path
        self.threads = threads
        self.providers = providers
        self.batch_size = batch_size
        self._session = None
        self._pid = None

    @property
    def session(self):
        # A session made before a fork (e.g. in the qcluster parent) is not used in
        # the child: ONNX Runtime's thread pools do not survive fork.
        if self._session is None or self._pid != os.getpid():
            import onnxruntime as ort

            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            available = ort.get_available_providers()
            providers = self.providers or [
                p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
            ]
            missing = [p for p in providers if p not in available]
            if missing:
                raise EmbedderConfigurationError(
                    f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)}). "
                    "Change MODERATION['EMBEDDER']['OPTIONS']['providers'].",
                    code="provider_missing",
                )
            logger.info("loading %s with %s", self.path, providers)
            self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
            self._pid = os.getpid()
        return self._session

    @cached_property
    def fixed_batch(self) -> bool:
        """Some exports fix the batch axis to 1; those run one input at a time."""
        return self.session.get_inputs()[0].shape[0] == 1

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        count = len(next(iter(feeds.values())))
        step = 1 if self.fixed_batch else self.batch_size
        outputs = [
            self.session.run(None, {name: value[start : start + step] for name, value in feeds.items()})[0]
            for start in range(0, count, step)
        ]
        return np.concatenate(outputs, axis=0)


def model_family(config: dict) -> str:
    """The model's family as error messages name it: its text model (M-CLIP, NLLB, SigLIP
    name theirs in config.json's text_cfg), else OpenAI CLIP / OpenCLIP's own text tower."""
    text_cfg = config.get("text_cfg") or {}
    return text_cfg.get("hf_model_name") or text_cfg.get("hf_tokenizer_name") or "OpenAI CLIP / OpenCLIP"


class ClipTextual:
    """The text tower: clean, tokenize (pad and truncate to the context length), run.

    Each family's export is fed what it expects, read from the model's own files:
    OpenAI CLIP, OpenCLIP, SigLIP, SigLIP2 and NLLB-CLIP take token ids alone as
    ``text``; M-CLIP (XLM-RoBERTa) takes ``input_ids`` and ``attention_mask``; int32 or
    int64 as the graph declares. The pad token and padding side come from
    tokenizer_config.json (SigLIP pads with "</s>", SigLIP2 with "<pad>"), the cleaning
    from config.json (see ``text_cleaning``). A graph that asks for anything else is
    refused with an ``EmbedderConfigurationError`` (``model_config``) naming the family
    and the file, never fed a guess.

    Seller text is plain text: a token of the tokenizer's added vocabulary typed into a
    title ("<|endoftext|>", "</s>", "[SEP]", "<pad>") is encoded as its letters, never
    as the control token itself.
    """

    FEEDS = {"text": "ids", "input_ids": "ids", "attention_mask": "attention_mask"}
    DTYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}

    def __init__(self, folder: Path, config: dict, **tower_options) -> None:
        from tokenizers import AddedToken, Tokenizer

        self.family = model_family(config)
        text_cfg = config.get("text_cfg", {})
        self.context_length = int(text_cfg.get("context_length", 77))
        clean = (text_cfg.get("tokenizer_kwargs") or {}).get("clean", "whitespace")
        try:
            self.clean = text_cleaning.CLEANERS[clean]
        except KeyError:
            raise EmbedderConfigurationError(
                f"{folder.parent / 'config.json'} ({self.family}) names an unknown text cleaning {clean!r} "
                f"(supported: {', '.join(text_cleaning.CLEANERS)}).",
                code="model_config",
            ) from None
        tokenizer_cfg = _read_json(folder / "tokenizer_config.json")
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:
            raise EmbedderConfigurationError(
                f"Cannot load {folder / 'tokenizer.json'}: {exc}.", code="model_missing"
            ) from exc
        # CLIP's text tower reads nothing after the first end token, so an end token
        # typed by a seller would hide the rest of the text from the consistency check.
        # `encode_special_tokens` makes the tokenizer read special tokens found in the
        # input as text (the post-processor and padding still add the real ones); added
        # tokens not marked special are marked first, as some exports leave control
        # tokens unmarked. Ids are unchanged.
        unmarked = [token for token in self.tokenizer.get_added_tokens_decoder().values() if not token.special]
        self.tokenizer.add_special_tokens([AddedToken(token.content, special=True) for token in unmarked])
        self.tokenizer.encode_special_tokens = True
        pad_token = tokenizer_cfg.get("pad_token")
        if isinstance(pad_token, dict):  # tokenizer_config may hold an AddedToken dict
            pad_token = pad_token.get("content")
        pad_id = self.tokenizer.token_to_id(pad_token) if pad_token else None
        if pad_id is None:
            # Padding with a guessed id would change what a pooling tower reads.
            raise EmbedderConfigurationError(
                f"{folder / 'tokenizer_config.json'} ({self.family}) names no pad_token of its tokenizer.json "
                f"(pad_token: {pad_token!r}).",
                code="model_config",
            )
        self.tokenizer.enable_padding(
            length=self.context_length,
            pad_token=pad_token,
            pad_id=pad_id,
            direction=tokenizer_cfg.get("padding_side", "right"),
        )
        self.tokenizer.enable_truncation(max_length=self.context_length)
        self.tower = _Tower(folder / "model.onnx", **tower_options)

    @cached_property
    def inputs(self) -> list[tuple[str, str, type]]:
        """(input name, encoding field, dtype) for each model input.

        Raises EmbedderConfigurationError for an input this embedder cannot fill.
        """
        inputs = []
        for model_input in self.tower.session.get_inputs():
            field, dtype = self.FEEDS.get(model_input.name), self.DTYPES.get(model_input.type)
            if field is None or dtype is None:
                raise EmbedderConfigurationError(
                    f"{self.tower.path} ({self.family}) expects an input {model_input.name!r} of "
                    f"{model_input.type}; this embedder feeds text towers "
                    f"{' or '.join(sorted(self.FEEDS))} as int32 or int64 token ids and masks.",
                    code="model_config",
                )
            inputs.append((model_input.name, field, dtype))
        if not any(field == "ids" for _, field, _ in inputs):
            raise EmbedderConfigurationError(
                f"{self.tower.path} ({self.family}) takes no token ids ('text' or 'input_ids').",
                code="model_config",
            )
        return inputs

    def feeds(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch([self.clean(text) for text in texts])
        return {
            name: np.asarray([getattr(encoding, field) for encoding in encodings], dtype=dtype)
            for name, field, dtype in self.inputs
        }

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.tower.run(self.feeds(texts))


class ClipVisual:
    """The image tower: resize and crop as the model's preprocess_cfg.json says, normalise, run."""

    RESIZE_MODES = ("shortest", "squash", "longest")
    MAX_EXACT_ASPECT = 32

    def __init__(self, folder: Path, **tower_options) -> None:
        cfg = _read_json(folder / "preprocess_cfg.json")
        size = cfg.get("size", 224)
        self.size = int(size[0] if isinstance(size, list) else size)
        self.mean = np.asarray(cfg.get("mean", [0.48145466, 0.4578275, 0.40821073]), dtype=np.float32)
        self.std = np.asarray(cfg.get("std", [0.26862954, 0.26130258, 0.27577711]), dtype=np.float32)
        interpolation = str(cfg.get("interpolation", "bicubic")).upper()
        try:
            self.resample = Image.Resampling[interpolation]
        except KeyError:
            raise EmbedderConfigurationError(
                f"{folder / 'preprocess_cfg.json'} names an unknown interpolation {interpolation.lower()!r}.",
                code="model_config",
            ) from None
        self.resize_mode = cfg.get("resize_mode", "shortest")
        if self.resize_mode not in self.RESIZE_MODES:
            raise EmbedderConfigurationError(
                f"{folder / 'preprocess_cfg.json'} names an unsupported resize_mode {self.resize_mode!r} "
                f"(supported: {', '.join(self.RESIZE_MODES)}).",
                code="model_config",
            )
        # Rescaling and normalising as the reference does (x * (1 / 255) in float64, then
        # (x - mean) / std in float32), tabulated per channel and byte value: one lookup
        # per pixel, and the reference's float32 values to the bit.
        levels = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
        self._levels = (levels[None, :] - self.mean[:, None]) / self.std[:, None]  # (3, 256)
        self._channels = np.arange(3)[:, None, None]
        self.tower = _Tower(folder / "model.onnx", **tower_options)

    def resize(self, image: Image.Image) -> Image.Image:
        """An RGB image -> RGB (size, size), in the reference's geometry.

        "shortest" is transformers' CLIPImageProcessor (and Immich's): the shorter side
        to ``size``, the longer one floored, then a crop at ``(new - size) // 2``.
        "longest" fits the whole image and pads it with black, as open_clip does.
        """
        size = self.size
        if self.resize_mode == "squash":
            return image.resize((size, size), resample=self.resample)
        width, height = image.size
        if self.resize_mode == "longest":
            ratio = max(width, height) / size  # open_clip's ResizeKeepRatio, its rounding included
            resized = image.resize((max(1, round(width / ratio)), max(1, round(height / ratio))), self.resample)
            canvas = Image.new("RGB", (size, size), (0, 0, 0))
            canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
            return canvas
        new_long = int(size * max(width, height) / min(width, height))
        new_width, new_height = (size, new_long) if width <= height else (new_long, size)
        left, top = (new_width - size) // 2, (new_height - size) // 2
        if new_long <= self.MAX_EXACT_ASPECT * size:
            return image.resize((new_width, new_height), self.resample).crop((left, top, left + size, top + size))
        # The reference resizes the whole image before cropping; a strip (1 x 40 000
        # pixels is a valid upload) would first grow to gigapixels. Past this aspect
        # ratio only the crop's box is resampled: the same geometry, and pixels a few
        # levels off the reference's, where Pillow's filter taps start at the box.
        x_scale, y_scale = width / new_width, height / new_height
        box = (left * x_scale, top * y_scale, (left + size) * x_scale, (top + size) * y_scale)
        return image.resize((size, size), self.resample, box=box)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """An RGB image -> float32 (3, size, size), normalised as the model expects."""
        pixels = np.asarray(self.resize(image)).transpose(2, 0, 1)  # uint8 (3, size, size)
        return self._levels[self._channels, pixels]

    @cached_property
    def input_name(self) -> str:
        """The graph's one input, float32 NCHW pixels.

        Raises EmbedderConfigurationError for another kind of input (some exports take
        uint8 RGB and normalise inside the graph; this embedder does not feed those).
        """
        inputs = self.tower.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            found = ", ".join(f"{i.name!r} of {i.type.removeprefix('tensor(').rstrip(')')}" for i in inputs)
            raise EmbedderConfigurationError(
                f"{self.tower.path} expects {found}; this embedder feeds one float32 (n, 3, size, size) input.",
                code="model_config",
            )
        return inputs[0].name

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        batch = np.stack([self.preprocess(image) for image in images])
        return self.tower.run({self.input_name: batch})


class OnnxClipEmbedder(Embedder):
    """CLIP on ONNX Runtime from a local folder, or downloaded once from the model hub.

    Options (``MODERATION["EMBEDDER"]["OPTIONS"]``):

    - ``model_dir``: a folder in the layout above. When unset, the model lives in
      ``cache_dir/model_name`` and, if missing, is downloaded when ``allow_download``.
    - ``model_name`` (default ``ViT-B-32__openai``, 512 dimensions) and ``hub_repo``
      (default ``immich-app/<model_name>``), ``hub_url``.
    - ``threads``: ONNX Runtime threads per session; ``providers``: execution providers
      (default CUDA when present, then CPU); ``batch_size``: inputs per run.
    - ``model_id``: the id stored with vectors (default ``onnx:<model_name>``, or the
      ``model_id`` in config.json).
    """

    def __init__(
        self,
        *,
        model_dir: str | os.PathLike | None = None,
        model_name: str = DEFAULT_MODEL_NAME,
        cache_dir: str | os.PathLike | None = None,
        allow_download: bool = False,
        hub_url: str = "https://huggingface.co",
        hub_repo: str | None = None,
        threads: int | None = None,
        providers: list[str] | None = None,
        batch_size: int = 32,
        model_id: str | None = None,
    ) -> None:
        if model_dir:
            folder = Path(model_dir).expanduser()
            missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
            if missing:
                raise EmbedderConfigurationError(
                    f"The CLIP model folder {folder} lacks {', '.join(missing)}. Point "
                    "MODERATION['EMBEDDER']['OPTIONS']['model_dir'] at a folder in the split ONNX layout "
                    "(config.json, visual/, textual/), e.g. an Immich CLIP model.",
                    code="model_missing",
                )
        else:
            folder = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / model_name
            if any(not (folder / name).is_file() for name in MODEL_FILES):
                if not allow_download:
                    raise EmbedderConfigurationError(
                        f"No CLIP model at {folder}. Set MODERATION['EMBEDDER']['OPTIONS']['model_dir'] to a local "
                        f"model folder, or set 'allow_download': True to fetch {hub_repo or 'immich-app/' + model_name}"
                        " from the model hub on first use.",
                        code="model_missing",
                    )
                download_model(hub_repo or f"immich-app/{model_name}", folder, hub_url=hub_url)
        self.folder = folder
        config = _read_json(folder / "config.json")
        try:
            self.dimensions = int(config["embed_dim"])
        except (KeyError, TypeError, ValueError):
            raise EmbedderConfigurationError(
                f"{folder / 'config.json'} has no integer 'embed_dim'.", code="model_config"
            ) from None
        self.model_id = model_id or config.get("model_id") or f"onnx:{model_name if not model_dir else folder.name}"
        tower_options = {"threads": threads, "providers": providers, "batch_size": batch_size}
        self.textual = ClipTextual(folder / "textual", config, **tower_options)
        self.visual = ClipVisual(folder / "visual", **tower_options)
        self.image_size = self.visual.size

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.textual(texts)

    def _embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.visual(images)


def download_model(repo: str, folder: Path, *, hub_url: str) -> None:
    """Fetch the model files of ``repo`` into ``folder`` with a progress bar.

    Files go to a temporary sibling folder that is renamed into place at the end, so
    an interrupted download never leaves a half model behind, and two processes
    downloading at once both end with one complete folder.
    """
    import requests
    from tqdm import tqdm

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with requests.Session() as session:
            for name in MODEL_FILES:
                url = f"{hub_url.rstrip('/')}/{repo}/resolve/main/{name}"
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    response = session.get(url, stream=True, timeout=(10, 60))
                    response.raise_for_status()
                    total = int(response.headers.get("Content-Length", 0)) or None
                    with target.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                        for chunk in response.iter_content(chunk_size=1 << 20):
                            out.write(chunk)
                            bar.update(len(chunk))
                except requests.RequestException as exc:
                    raise EmbedderConfigurationError(
                        f"Downloading {url} failed: {exc}. Download the model folder by other means and set "
                        "MODERATION['EMBEDDER']['OPTIONS']['model_dir'] to it.",
                        code="model_download",
                    ) from exc
        if folder.exists() and not (folder / MODEL_FILES[-1]).is_file():
            shutil.rmtree(folder)  # an incomplete folder from an earlier attempt
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / MODEL_FILES[-1]).is_file():  # not another process's finished download
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
