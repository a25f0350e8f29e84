"""Listings per second through a real qcluster, in one run.

1. Overhead: a zero-cost embedder (bench/zero_cost.py), 2 workers, small photos.
   django-q2's own no-op task rate (bench/noop.py) before and after, the save path
   (saved listings queue drains: moderation/drains.py) and batch tasks
   (`moderation_scan --all`), each as a ratio to the no-op rate. Target: >= 1.0.
2. With the ViT-B/32-sized local model (bench/.models/vit-b32-random), 1024x1024
   JPEGs: end-to-end listings/s through the cluster against the embedder's own
   throughput (texts + images) on the same inputs in this process. Target: >= 0.85.

    .venv/bin/python bench/pipeline_throughput.py [--listings 1000] [--model-listings 64]
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODEL_DIR = ROOT / "bench" / ".models" / "vit-b32-random"
DATABASE = "bench_pipeline"


def configure(moderation: dict, media_root: str) -> dict:
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "EMBEDDED_PG_DATABASE": DATABASE,
        "MEDIA_ROOT": media_root,
        "MODERATION_SETTINGS": json.dumps(moderation),
        "MODERATION_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    return env


def quiet() -> None:
    """django-q logs every enqueued task at INFO."""
    import logging

    logging.getLogger("django-q").setLevel(logging.WARNING)


def fresh_database() -> None:
    import psycopg

    from config import embedded_postgres

    params = embedded_postgres.ensure_running()
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def start_cluster(env: dict, workers: int, *, wait: bool = True) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env={**os.environ, **env, "Q_WORKERS": str(workers)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if wait:
        time.sleep(4)  # start-up is not what we measure
    return process


def stop_cluster(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


def wait_until_scored(since: float, count: int, *, scored_since: float | None = None, timeout: float = 900) -> float:
    """Wait until ``count`` listings were scored after ``scored_since`` (default: ``since``);
    return the seconds since ``since``."""
    from datetime import UTC, datetime

    from catalog.models import Listing

    mark = datetime.fromtimestamp(since if scored_since is None else scored_since, tz=UTC)
    while Listing.objects.filter(moderated_at__gte=mark).count() < count:
        if time.time() - since > timeout:
            raise SystemExit("timed out waiting for the cluster")
        time.sleep(0.05)
    return time.time() - since


def make_listings(n: int, photo) -> list:
    from decimal import Decimal

    from django.contrib.auth.models import User
    from django.core.files.base import ContentFile
    from django.db import transaction

    from catalog.models import Category, Listing

    # Many sellers, as on a marketplace: the duplicate check looks at other sellers' photos.
    stamp = time.time_ns()
    sellers = [User.objects.create(username=f"bench-{stamp}-{j}") for j in range(50)]
    category, _ = Category.objects.get_or_create(name="Bench", slug="bench")
    with transaction.atomic():
        for i in range(n):
            listing = Listing(seller=sellers[i % 50], category=category, title=f"item {i} red", price=Decimal(1))
            listing.image.save(f"{i}.jpg", ContentFile(photo(i)), save=False)
            listing.save()


def small_photo(i: int, *, flat: bool = False) -> bytes:
    """A 64x64 picture of its own: a random pattern seeded by ``i``, so that no two hash
    alike. ``flat``: one plain colour, so that every photo has the same perceptual hash
    (the duplicate check's worst case: its locks then serialise the writes)."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    if flat:
        image = Image.new("RGB", (64, 64), (i % 256, (i * 7) % 256, (i * 13) % 256))
    else:
        pixels = np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((64, 64), Image.Resampling.BILINEAR)
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scoring_rate(count: int, timeout: float = 900) -> float:
    """Listings/s between the first and the last listing scored: the cluster's start-up
    and its first task are not counted (nor the listings that task wrote, which all carry
    the same time)."""
    from django.db.models import Max, Min

    from catalog.models import Listing

    started = time.time()
    while Listing.objects.filter(moderated_at__isnull=False).count() < count:
        if time.time() - started > timeout:
            raise SystemExit("timed out waiting for the cluster")
        time.sleep(0.05)
    span = Listing.objects.aggregate(first=Min("moderated_at"), last=Max("moderated_at"))
    first_task = Listing.objects.filter(moderated_at=span["first"]).count()
    return (count - first_task) / (span["last"] - span["first"]).total_seconds()


def noop_rate(env: dict, tasks: int) -> float:
    """django-q2's own ceiling: ``tasks`` no-op tasks (bench/noop.py, results not stored)
    queued with the cluster stopped, then drained by a fresh cluster of 2 workers;
    tasks/s from the first to the last one run (start-up not counted)."""
    import redis
    from django_q.tasks import async_task

    counter = redis.Redis.from_url("redis://127.0.0.1:6379/7")
    counter.delete("bench:noop")
    for _ in range(tasks):
        async_task("noop.tick", save=False)
    cluster = start_cluster(env, workers=2, wait=False)
    try:
        while int(counter.get("bench:noop") or 0) == 0:
            time.sleep(0.005)
        first, started = int(counter.get("bench:noop")), time.perf_counter()
        while int(counter.get("bench:noop") or 0) < tasks:
            time.sleep(0.005)
        return (tasks - first) / (time.perf_counter() - started)
    finally:
        stop_cluster(cluster)


def overhead(listings: int, broker: str, *, flat: bool = False) -> None:
    media = tempfile.mkdtemp(prefix="bench-media-")
    env = configure({"EMBEDDER": {"BACKEND": "bench.zero_cost.ZeroCostEmbedder"}}, media)
    env["PYTHONPATH"] = os.environ["PYTHONPATH"] = f"{ROOT / 'bench'}:{ROOT}"  # the workers import noop
    if broker == "redis":
        env["Q_REDIS_URL"] = os.environ["Q_REDIS_URL"] = "redis://127.0.0.1:6379/7"
        env["Q_CLUSTER_NAME"] = os.environ["Q_CLUSTER_NAME"] = f"bench-{os.getpid()}"
    fresh_database()
    import django

    django.setup()
    quiet()
    from django.core.management import call_command

    from catalog.models import Listing

    call_command("migrate", verbosity=0)
    noop = [noop_rate(env, listings)]
    # The save path: listings saved one by one (each its own transaction), the cluster
    # stopped, so that saving (the web process's cost) and scoring are measured apart.
    # With drains (the default) the saves queue one drain task; DRAIN_SAVES off, one each.
    started = time.time()
    make_listings(listings, lambda i: small_photo(i, flat=flat))
    saving = listings / (time.time() - started)
    from django_q.brokers import get_broker

    queued = get_broker().queue_size()
    cluster = start_cluster(env, workers=2)
    try:
        save_path = scoring_rate(listings)
        Listing.objects.update(moderated_at=None)
        call_command(
            "moderation_scan", "--all", "--batch-size", "50", verbosity=0, stdout=io.StringIO(), stderr=io.StringIO()
        )
        batches = scoring_rate(listings)
    finally:
        stop_cluster(cluster)
    noop.append(noop_rate(env, listings))  # again after: the machine is shared, its speed moves
    ceiling = sum(noop) / len(noop)
    photos = "flat photos, all hashing alike" if flat else "distinct photos"
    print(f"{broker} broker, {photos}, {listings} listings / tasks, 2 workers:")
    print(f"  django-q2 no-op tasks (before, after):       {noop[0]:6.1f}, {noop[1]:6.1f} tasks/s")
    print(f"  saving listings (web process), {queued:4d} task(s) queued: {saving:6.1f} listings/s")
    print(
        f"  save path, zero-cost embedder:               {save_path:6.1f} listings/s, "
        f"save/no-op {save_path / ceiling:.2f} (target >= 1.0)"
    )
    print(
        f"  batch tasks of 50, zero-cost embedder:       {batches:6.1f} listings/s, "
        f"batch/no-op {batches / ceiling:.2f} (target >= 1.0)"
    )


def with_model(listings: int) -> None:
    import build_vit_b32

    build_vit_b32.ensure(MODEL_DIR)
    from embedder_throughput import photo_jpeg

    media = tempfile.mkdtemp(prefix="bench-media-")
    options = {"model_dir": str(MODEL_DIR), "threads": 2, "batch_size": 16}
    env = configure(
        {
            "EMBEDDER": {"BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder", "OPTIONS": options},
            "BATCH_SIZE": 16,
        },
        media,
    )
    fresh_database()
    import django

    django.setup()
    quiet()
    from django.core.management import call_command

    from moderation.embedders import decode_listing_image, get_embedder

    call_command("migrate", verbosity=0)
    jpegs = [photo_jpeg(i) for i in range(listings)]
    embedder = get_embedder()
    # Both models run once before the clock starts, as the cluster's worker is warmed up.
    embedder.embed(texts=["warm up"], images=[decode_listing_image(jpegs[0], embedder=embedder)])
    started = time.perf_counter()
    for start in range(0, listings, 16):
        chunk = range(start, min(listings, start + 16))
        embedder.embed(
            texts=[f"item {i} red" for i in chunk],
            images=[decode_listing_image(jpegs[i], embedder=embedder) for i in chunk],
        )
    own = listings / (time.perf_counter() - started)

    from django_q.models import OrmQ

    from catalog.models import Listing
    from moderation import queue

    make_listings(16, lambda i: jpegs[i])  # to warm the worker up
    warm = [(str(pk), 1) for pk in Listing.objects.order_by("pk").values_list("pk", flat=True)[:16]]
    make_listings(listings, lambda i: jpegs[i])
    OrmQ.objects.all().delete()  # the save path's tasks: measure the batch path alone
    cluster = start_cluster(env, workers=1)
    try:
        # The worker loads the model on its first task, once per process: not measured.
        queue.enqueue_batch("catalog.listing", warm)
        wait_until_scored(time.time(), 16, scored_since=0)
        started = time.time()
        call_command("moderation_scan", verbosity=0, stdout=io.StringIO(), stderr=io.StringIO())
        batches = listings / wait_until_scored(started, listings)
        # The save path: sellers save while the cluster runs; the saves queue drains
        # (moderation/drains.py), which score what has queued up (saving is included).
        started = time.time()
        make_listings(listings, lambda i: jpegs[i])
        saved = listings / wait_until_scored(started, listings)
    finally:
        stop_cluster(cluster)
    # The save path's tasks alone: the saves queued while the cluster is stopped (on a
    # site the web processes run on other cores), then drained by a fresh cluster; the
    # rate from its first task's end to the last listing scored, as scoring_rate says.
    Listing.objects.all().delete()
    make_listings(listings, lambda i: jpegs[i])
    cluster = start_cluster(env, workers=1, wait=False)
    try:
        drained = scoring_rate(listings)
    finally:
        stop_cluster(cluster)
    for path, through in (
        ("batch tasks (moderation_scan)", batches),
        ("the save path (drains), saving on the same 2 cores meanwhile", saved),
        ("the save path's drains, scoring a saved backlog", drained),
    ):
        print(
            f"ViT-B/32-sized model, {path}: embedder alone {own:5.1f} listings/s, through the cluster "
            f"{through:5.1f} listings/s, ratio {through / own:.2f} (target >= 0.85)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listings", type=int, default=1000)
    parser.add_argument("--model-listings", type=int, default=64)
    parser.add_argument("--part", choices=["overhead", "model", "both"], default="both")
    parser.add_argument("--broker", choices=["orm", "redis"], default="orm", help="for the overhead part")
    parser.add_argument("--flat", action="store_true", help="overhead part: plain-colour photos, all hashing alike")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    # Each part configures Django differently: run them in separate processes.
    if args.part == "both":
        for part, broker in (("overhead", "orm"), ("overhead", "redis"), ("model", "orm")):
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--part",
                    part,
                    "--broker",
                    broker,
                    "--listings",
                    str(args.listings),
                    "--model-listings",
                    str(args.model_listings),
                ],
                check=True,
            )
    elif args.part == "overhead":
        overhead(args.listings, args.broker, flat=args.flat)
    else:
        with_model(args.model_listings)
