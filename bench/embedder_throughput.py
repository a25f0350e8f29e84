"""Local backend throughput against bare ONNX Runtime on the same inputs, in one run.

For images, "ours" is the whole backend path a task takes: safe decoding of a
1024x1024 JPEG (with draft mode), preprocessing from the model's config, batching,
ONNX Runtime, validation and normalisation. "bare" is `session.run` alone on inputs
preprocessed beforehand, with the same thread count. For texts, "ours" tokenizes and
runs; "bare" runs pre-tokenized ids. Ratios are measured in this run, side by side,
so the shared machine's noise hits both.

    .venv/bin/pip install -r bench/requirements.txt   # once, to build the model
    .venv/bin/python bench/embedder_throughput.py [--threads 2] [--images 64]
"""

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL_DIR = Path(__file__).resolve().parent / ".models" / "vit-b32-random"


def photo_jpeg(seed: int, size: int = 1024) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)).resize((size, size))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.integers(0, size, 2)
        draw.ellipse([x, y, x + size // 4, y + size // 4], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buffer = io.BytesIO()
    image.filter(ImageFilter.GaussianBlur(2)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    args = parser.parse_args()
    import build_vit_b32

    build_vit_b32.ensure(args.model_dir)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import onnxruntime as ort

    from moderation.embedders import decode_listing_image
    from moderation.embedders.onnx_clip import OnnxClipEmbedder

    jpegs = [photo_jpeg(i) for i in range(args.images)]
    texts = [f"used red running shoes size {i % 12 + 36}, worn twice, great grip" for i in range(args.images * 2)]

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    bare_visual = ort.InferenceSession(
        str(args.model_dir / "visual" / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    bare_textual = ort.InferenceSession(
        str(args.model_dir / "textual" / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )

    # Preprocessing cost per 1024x1024 JPEG: decode (draft) + resize/crop/normalise.
    preprocess_embedder = OnnxClipEmbedder(model_dir=args.model_dir, threads=args.threads)
    timings = []
    pixels = []
    for data in jpegs:
        started = time.perf_counter()
        pixels.append(preprocess_embedder.visual.preprocess(decode_listing_image(data, embedder=preprocess_embedder)))
        timings.append((time.perf_counter() - started) * 1000)
    pixels = np.stack(pixels)
    ids = preprocess_embedder.textual.feeds(texts)["text"]
    print(
        f"preprocessing per 1024x1024 JPEG: median {statistics.median(timings):.2f} ms, "
        f"p95 {sorted(timings)[int(len(timings) * 0.95)]:.2f} ms (target <= 10 ms)"
    )

    print(f"\n{'kind':6} {'batch':>5} {'ours/s':>8} {'bare/s':>8} {'ratio':>6}  (target ratio >= 0.85)")
    for batch in (1, 8, 32):
        embedder = OnnxClipEmbedder(model_dir=args.model_dir, threads=args.threads, batch_size=batch)
        embedder.embed_images([decode_listing_image(jpegs[0], embedder=embedder)])  # warm up
        embedder.embed_texts(texts[:1])
        bare_visual.run(None, {"image": pixels[:1]})
        bare_textual.run(None, {"text": ids[:1]})

        # Ours and bare alternate batch by batch, so that the shared machine's noise hits
        # both alike; each side's total time over all batches gives its rate.
        timings = {"ours_i": 0.0, "bare_i": 0.0, "ours_t": 0.0, "bare_t": 0.0}

        def clock(key, work, timings=timings):
            started = time.perf_counter()
            work()
            timings[key] += time.perf_counter() - started

        for _ in range(2):
            for start in range(0, len(jpegs), batch):
                chunk = jpegs[start : start + batch]
                clock(
                    "ours_i",
                    lambda chunk=chunk, embedder=embedder: embedder.embed_images(
                        [decode_listing_image(data, embedder=embedder) for data in chunk]
                    ),
                )
                clock(
                    "bare_i",
                    lambda start=start, batch=batch: bare_visual.run(None, {"image": pixels[start : start + batch]}),
                )
            for start in range(0, len(texts), batch):
                clock(
                    "ours_t",
                    lambda start=start, batch=batch, embedder=embedder: embedder.embed_texts(
                        texts[start : start + batch]
                    ),
                )
                clock(
                    "bare_t",
                    lambda start=start, batch=batch: bare_textual.run(None, {"text": ids[start : start + batch]}),
                )
        ours_i, bare_i = 2 * len(jpegs) / timings["ours_i"], 2 * len(jpegs) / timings["bare_i"]
        ours_t, bare_t = 2 * len(texts) / timings["ours_t"], 2 * len(texts) / timings["bare_t"]
        print(f"{'image':6} {batch:>5} {ours_i:8.1f} {bare_i:8.1f} {ours_i / bare_i:6.2f}")
        print(f"{'text':6} {batch:>5} {ours_t:8.1f} {bare_t:8.1f} {ours_t / bare_t:6.2f}")


if __name__ == "__main__":
    main()
