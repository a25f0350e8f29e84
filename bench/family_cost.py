"""Memory and speed of each CLIP family on this machine, on random weights of the real size.

Random weights cost what trained ones do: the same graph, widths, depths and vocabulary
tables. Each family is built once into bench/.models/<family>-real (tests/family_models.py,
needs torch and sentencepiece from requirements-dev.txt), then measured in a fresh
process: resident memory after both towers are loaded and warmed, and the median time
of one batch of texts and one of preprocessed photos through OnnxClipEmbedder.

    .venv/bin/python bench/family_cost.py [--threads 2] [--texts 32] [--images 8] [--families openai siglip]

Numbers say what this machine costs, never how well a model matches text to photos.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODELS = ROOT / "bench" / ".models"

MEASURE = """
import json, statistics, sys, time
import numpy as np, psutil
from PIL import Image
from moderation.embedders.onnx_clip import OnnxClipEmbedder

folder, threads, texts, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
before = psutil.Process().memory_info().rss
embedder = OnnxClipEmbedder(model_dir=folder, threads=threads, batch_size=max(texts, images))
batch_texts = ["빨간 머그컵 손잡이 있음, taza de cerámica roja con asa"] * texts
rng = np.random.default_rng(0)
photos = [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(images)]
embedder.embed_texts(batch_texts[:1]), embedder.embed_images(photos[:1])  # load and warm

def median(call, repeat=5):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

text_s = median(lambda: embedder.embed_texts(batch_texts))
image_s = median(lambda: embedder.embed_images(photos))
print(json.dumps({
    "dims": embedder.dimensions,
    "context": embedder.textual.context_length,
    "rss_mib": (psutil.Process().memory_info().rss - before) / 2**20,
    "text_ms": 1000 * text_s / texts,
    "image_ms": 1000 * image_s / images,
}))
"""


def model_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    from tests.family_models import FAMILIES, build_family

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()

    print("| family | dims | context | model files (MiB) | memory (MiB) | text (ms each) | photo (ms each) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.families:
        folder = MODELS / f"{name}-real"
        if not (folder / "textual" / "model.onnx").is_file():
            started = time.perf_counter()
            build_family(name, folder, scale="real")
            print(f"(built {folder} in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
        run = subprocess.run(
            [sys.executable, "-c", MEASURE, str(folder), str(args.threads), str(args.texts), str(args.images)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(run.stdout.strip().splitlines()[-1])
        print(
            f"| {name} | {result['dims']} | {result['context']} | {model_bytes(folder) / 2**20:.0f} "
            f"| {result['rss_mib']:.0f} | {result['text_ms']:.1f} | {result['image_ms']:.1f} |",
            flush=True,
        )
    print(f"({args.threads} threads, {args.texts} texts and {args.images} 640x480 photos a batch, median of 5)")


if __name__ == "__main__":
    main()
