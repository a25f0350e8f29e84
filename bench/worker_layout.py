"""Processes x ONNX threads: listings/s of the local embedder for each layout, in one run.

A listing is one text and one 1024x1024 JPEG, through the backend path a task takes
(safe decoding with draft mode, preprocessing, ONNX Runtime, validation), in batches of
``BATCH_SIZE`` (a task's embedder call). For each layout, P processes (forked, each
building its own ``OnnxClipEmbedder`` with ``threads=T``, as each qcluster worker does)
run at once: each times its first ``--batches`` batches, and keeps running until every
process has timed its own, so that each measured batch ran against all P. The layout's
rate is the sum of the processes' rates. The grid is run twice (the second time in
reverse order), so that drift of the shared machine's load shows as a difference
between the rounds.

Then the latency of one query (P=1): one search text, and one listing (a text and a
photo), for each T, interleaved, median of ``--repeats``.

    .venv/bin/python bench/build_vit_b32.py bench/.models/vit-b32-random   # once
    .venv/bin/python bench/worker_layout.py [--processes 1 2 3 4] [--threads 1 2 4] [--batches 2]
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL_DIR = Path(__file__).resolve().parent / ".models" / "vit-b32-random"
TEXT = "used red running shoes size {}, worn twice, great grip"


def embedder_for(model_dir: Path, threads: int):
    from moderation.embedders.onnx_clip import OnnxClipEmbedder

    return OnnxClipEmbedder(model_dir=model_dir, threads=threads)


def score_batch(embedder, texts: list[str], jpegs: list[bytes]) -> None:
    """One task's embedder call: decode the photos, embed texts and photos together."""
    from moderation.embedders import decode_listing_image

    images = [decode_listing_image(data, embedder=embedder) for data in jpegs]
    embedder.embed(texts=texts, images=images)


def run_process(model_dir, threads, batch, batches, jpegs, ready, start, done, stop, results) -> None:
    embedder = embedder_for(model_dir, threads)
    texts = [TEXT.format(36 + i % 12) for i in range(batch)]
    score_batch(embedder, texts, jpegs[:batch])  # sessions loaded and warm, as in a running worker
    ready.release()
    start.wait()
    started = time.perf_counter()
    for _ in range(batches):
        score_batch(embedder, texts, jpegs[:batch])
    results.put((batches * batch, time.perf_counter() - started))
    done.release()
    # Load for the others until each has timed its batches.
    while not stop.is_set():
        score_batch(embedder, texts, jpegs[:batch])


def wait_for(semaphore, children) -> None:
    """Acquire ``semaphore`` once per child; raises SystemExit when a child died instead."""
    for _ in children:
        while not semaphore.acquire(timeout=1):
            if any(child.exitcode not in (None, 0) for child in children):
                for child in children:
                    child.terminate()
                raise SystemExit("a measuring process failed (its traceback is above)")


def measure_layout(model_dir: Path, processes: int, threads: int, batch: int, batches: int, jpegs) -> float:
    """Total listings/s of ``processes`` concurrent embedders of ``threads`` threads each."""
    context = multiprocessing.get_context("fork")
    ready, done = context.Semaphore(0), context.Semaphore(0)
    start, stop = context.Event(), context.Event()
    results = context.Queue()
    children = [
        context.Process(
            target=run_process, args=(model_dir, threads, batch, batches, jpegs, ready, start, done, stop, results)
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    wait_for(ready, children)
    start.set()
    wait_for(done, children)
    stop.set()
    rates = [count / seconds for count, seconds in (results.get() for _ in children)]
    for child in children:
        child.join()
    return sum(rates)


def latencies(model_dir: Path, threads: list[int], jpeg: bytes, repeats: int) -> dict[int, tuple[float, float]]:
    """{T: (median ms of one search text, median ms of one listing)}, the T's interleaved."""
    embedders = {t: embedder_for(model_dir, t) for t in threads}
    timings = {t: ([], []) for t in threads}
    for embedder in embedders.values():  # warm
        score_batch(embedder, [TEXT.format(40)], [jpeg])
    for i in range(repeats):
        for t, embedder in embedders.items():
            started = time.perf_counter()
            embedder.embed_texts([TEXT.format(36 + i % 12)])
            middle = time.perf_counter()
            score_batch(embedder, [TEXT.format(36 + i % 12)], [jpeg])
            ended = time.perf_counter()
            timings[t][0].append((middle - started) * 1000)
            timings[t][1].append((ended - middle) * 1000)
    return {t: (statistics.median(text), statistics.median(listing)) for t, (text, listing) in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batches", type=int, default=2, help="timed batches per process")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15, help="latency samples per thread count")
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    args = parser.parse_args()
    import build_vit_b32

    build_vit_b32.ensure(args.model_dir)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import onnxruntime as ort
    from embedder_throughput import photo_jpeg

    from moderation.conf import moderation_settings

    batch = moderation_settings.BATCH_SIZE
    jpegs = [photo_jpeg(i) for i in range(batch)]
    cores = os.cpu_count()
    print(
        f"{cores} cores (os.cpu_count), ONNX Runtime {ort.__version__}, batches of {batch} listings "
        f"(BATCH_SIZE), {args.batches} timed batches per process, {args.rounds} rounds\n",
        flush=True,
    )

    layouts = [(p, t) for p in args.processes for t in args.threads]
    rates: dict[tuple[int, int], list[float]] = {layout: [] for layout in layouts}
    for round_ in range(args.rounds):
        for p, t in layouts if round_ % 2 == 0 else reversed(layouts):
            rate = measure_layout(args.model_dir, p, t, batch, args.batches, jpegs)
            rates[(p, t)].append(rate)
            print(f"  round {round_ + 1}: P={p} T={t}: {rate:6.2f} listings/s", flush=True)

    rounds = " ".join(f"{'round ' + str(r + 1):>8}" for r in range(args.rounds))
    print(f"\n{'P':>2} {'T':>2} {'P x T':>5} {rounds} {'mean':>8} {'spread':>7}  (listings/s, all P together)")
    for p, t in layouts:
        values = rates[(p, t)]
        mean = statistics.mean(values)
        spread = (max(values) - min(values)) / mean
        print(f"{p:>2} {t:>2} {p * t:>5} {' '.join(f'{v:8.2f}' for v in values)} {mean:8.2f} {spread:7.0%}")
    best = max(layouts, key=lambda layout: statistics.mean(rates[layout]))
    best_rate = statistics.mean(rates[best])
    print(f"\nbest layout on {cores} cores: P={best[0]} processes x T={best[1]} threads ({best_rate:.2f} listings/s)")
    print(
        "within 10% of it:",
        ", ".join(
            f"P={p} T={t} ({statistics.mean(rates[(p, t)]) / best_rate:.2f})"
            for p, t in layouts
            if statistics.mean(rates[(p, t)]) >= 0.9 * best_rate
        ),
    )
    print(
        f"rule for N cores: workers = {best[0] / cores:g} x N, threads = {best[1]} "
        f"(P x T = {best[0] * best[1] / cores:g} x cores)"
    )

    print(f"\nlatency of one query, one process (P=1), median of {args.repeats}:", flush=True)
    lat = latencies(args.model_dir, args.threads, jpegs[0], args.repeats)
    print(f"{'T':>2} {'search text ms':>15} {'listing ms':>11}  (listing = one text + one 1024x1024 JPEG)")
    for t, (text, listing) in lat.items():
        print(f"{t:>2} {text:15.1f} {listing:11.1f}")


if __name__ == "__main__":
    main()
