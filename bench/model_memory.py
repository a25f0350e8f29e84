"""Memory of the local model per process: gunicorn web workers and qcluster workers, in one run.

For each model (the ViT-B/32-sized benchmark model and the colour-words demo model):

1. Web: gunicorn serving the demo site (``config.wsgi``) with 2 workers, with and
   without ``--preload``. Each worker is measured with Django loaded (settings, apps,
   URLconf), after embedding a search text (what ``/api/search/text/`` calls:
   ``get_embedder().embed_texts``) and after embedding a search photo (``embed_images``).
   The two ``/bench/`` routes that trigger these are added around the site's WSGI
   application by this module (``application``), so that no database is needed.
2. Worker: a real ``manage.py qcluster`` with 2 workers on the embedded PostgreSQL, after
   scoring 16 listings (1024x1024 JPEGs); every process of the cluster is measured.
3. ONNX Runtime's memory options: one process, both towers, one batch of ``BATCH_SIZE``
   listings, with the CPU memory arena and the memory pattern on and off.

RSS counts shared pages in full in every process; PSS divides each shared page among
the processes that map it, so PSS summed over processes is their real total; USS is
what the process alone holds (freed when it exits). From psutil (``memory_full_info``),
or /proc/<pid>/smaps_rollup without it. MiB.

    .venv/bin/python bench/model_memory.py [--part web|worker|options|all]
"""

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
VIT_DIR = ROOT / "bench" / ".models" / "vit-b32-random"
DEMO_DIR = ROOT / "bench" / ".models" / "colour-words"
DATABASE = "bench_memory"
MIB = 1024 * 1024


# -- the web side: a WSGI application for gunicorn -------------------------------------

if os.environ.get("BENCH_MODEL_MEMORY_WSGI"):
    # Imported by gunicorn (in the master with --preload, else in each worker).
    from config.wsgi import application as site_application


def application(environ, start_response):
    """The demo site, plus /bench/pid, /bench/embed/text and /bench/embed/image, which
    answer {"pid": ...} after loading the URLconf or embedding one query."""
    path = environ.get("PATH_INFO", "")
    if not path.startswith("/bench/"):
        return site_application(environ, start_response)
    from django.urls import get_resolver

    from moderation.embedders import decode_listing_image, get_embedder

    urls = len(get_resolver().url_patterns)  # imports every view, as the first request does
    if path == "/bench/embed/text":
        get_embedder().embed_texts(["red running shoes, size 42"])
    elif path == "/bench/embed/image":
        from embedder_throughput import photo_jpeg

        embedder = get_embedder()
        embedder.embed_images([decode_listing_image(photo_jpeg(0), embedder=embedder)])
    body = json.dumps({"pid": os.getpid(), "urls": urls}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Connection", "close")])
    return [body]


# -- measuring ------------------------------------------------------------------------


def memory(pid: int) -> dict[str, float]:
    """{"rss", "pss", "uss"} of process ``pid``, MiB."""
    try:
        import psutil

        info = psutil.Process(pid).memory_full_info()
        return {"rss": info.rss / MIB, "pss": info.pss / MIB, "uss": info.uss / MIB}
    except ImportError:
        fields = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) * 1024
        uss = fields["Private_Clean"] + fields["Private_Dirty"]
        return {"rss": fields["Rss"] / MIB, "pss": fields["Pss"] / MIB, "uss": uss / MIB}


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            kids = (task / "children").read_text().split()
            found += [int(kid) for kid in kids]
            frontier += [int(kid) for kid in kids]
    return found


def maps_onnxruntime(pid: int) -> bool:
    return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()


ROWS: list[tuple] = []


def row(kind: str, model: str, stage: str, mem: dict[str, float], base: dict[str, float] | None = None) -> None:
    share = f"{mem['pss'] - base['pss']:7.0f}" if base else f"{'':7}"
    ROWS.append((kind, model, stage, mem, share))
    print(f"{kind:34} {model:13} {stage:26} {mem['rss']:7.0f} {mem['pss']:7.0f} {mem['uss']:7.0f} {share}", flush=True)


def header() -> None:
    print(
        f"{'process':34} {'model':13} {'state':26} {'RSS':>7} {'PSS':>7} {'USS':>7} {'model':>7}  (MiB;"
        " model = PSS minus the same process before the model)"
    )


def settings_for(model_dir: Path, threads: int = 1) -> dict:
    return {
        "EMBEDDER": {
            "BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder",
            "OPTIONS": {"model_dir": str(model_dir), "threads": threads},
        }
    }


# -- 1. web ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=120) as response:
        return json.loads(response.read())["pid"]


def each_worker(port: int, path: str, workers: int) -> set[int]:
    """Request ``path`` until ``workers`` distinct workers have answered it."""
    seen: set[int] = set()
    for _ in range(200):
        seen.add(get(port, path))
        if len(seen) == workers:
            return seen
    raise SystemExit(f"only {len(seen)} of {workers} gunicorn workers answered {path}")


def web(model: str, model_dir: Path, *, preload: bool, workers: int = 2) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "BENCH_MODEL_MEMORY_WSGI": "1",
        "MODERATION_SETTINGS": json.dumps(settings_for(model_dir)),
    }
    command = [sys.executable, "-m", "gunicorn", "--pythonpath", str(ROOT / "bench"), "--workers", str(workers)]
    command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"] + (["--preload"] if preload else [])
    master = subprocess.Popen([*command, "model_memory:application"], cwd=ROOT, env=env)
    kind = f"gunicorn worker{' (--preload)' if preload else ''}"
    try:
        for _ in range(300):
            try:
                get(port, "/bench/pid")
                break
            except OSError:
                time.sleep(0.2)
        pids = sorted(each_worker(port, "/bench/pid", workers))
        before = {pid: memory(pid) for pid in pids}
        for pid in pids:
            row(kind, model, "Django loaded", before[pid])
        each_worker(port, "/bench/embed/text", workers)
        for pid in pids:
            row(kind, model, "+ text search (text tower)", memory(pid), before[pid])
        each_worker(port, "/bench/embed/image", workers)
        for pid in pids:
            row(kind, model, "+ photo search (both)", memory(pid), before[pid])
        row("gunicorn master", model, "", memory(master.pid))
    finally:
        master.terminate()
        master.wait(timeout=60)


# -- 2. worker ------------------------------------------------------------------------


def worker(model: str, model_dir: Path, *, workers: int = 2, listings: int = 16) -> None:
    """A real qcluster on the embedded PostgreSQL; run in its own process (Django is set
    up with this model's settings)."""
    import psycopg

    from config import embedded_postgres

    media = tempfile.mkdtemp(prefix="bench-media-")
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "EMBEDDED_PG_DATABASE": DATABASE,
        "MEDIA_ROOT": media,
        "MODERATION_SETTINGS": json.dumps(settings_for(model_dir)),
        "MODERATION_LOG_LEVEL": "WARNING",
        "Q_WORKERS": str(workers),
        # A loaded shared machine: a batch must not time out (memory is what is measured).
        "Q_TIMEOUT": "900",
        "Q_RETRY": "1000",
    }
    os.environ.update(env)
    params = embedded_postgres.ensure_running()
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    import django

    django.setup()
    from decimal import Decimal

    from django.contrib.auth.models import User
    from django.core.files.base import ContentFile
    from django.core.management import call_command
    from django.db import transaction
    from embedder_throughput import photo_jpeg

    from catalog.models import Category, Listing

    call_command("migrate", verbosity=0, stdout=io.StringIO())
    cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env={**os.environ, **env})
    try:
        for _ in range(600):  # the sentinel, the pusher, the monitor and the workers
            time.sleep(0.5)
            if len(children(cluster.pid)) >= workers + 3:
                break
        time.sleep(2)
        idle = {pid: memory(pid) for pid in children(cluster.pid)}
        sellers = [User.objects.create(username=f"bench-{i}") for i in range(8)]
        category, _ = Category.objects.get_or_create(name="Bench", slug="bench")
        # Two waves, so that both workers get a task of their own.
        for wave in range(2):
            with transaction.atomic():
                for i in range(wave * listings // 2, (wave + 1) * listings // 2):
                    listing = Listing(
                        seller=sellers[i % 8], category=category, title=f"red shoes {i}", price=Decimal(1)
                    )
                    listing.image.save(f"{i}.jpg", ContentFile(photo_jpeg(i)), save=False)
                    listing.save()
        started = time.time()
        while Listing.objects.filter(moderated_at__isnull=False).count() < listings:
            if time.time() - started > 600:
                raise SystemExit("timed out waiting for the cluster")
            time.sleep(0.2)
        time.sleep(1)
        row("qcluster (main)", model, "after scoring", memory(cluster.pid))
        for pid in children(cluster.pid):
            loaded = maps_onnxruntime(pid)
            kind = "qcluster worker" if loaded else "qcluster process (no model)"
            row(kind, model, "after scoring" if loaded else "", memory(pid), idle.get(pid) if loaded else None)
    finally:
        cluster.terminate()
        cluster.wait(timeout=60)


# -- 3. ONNX Runtime's memory options ------------------------------------------------


def options(model: str, model_dir: Path, arena: bool, pattern: bool) -> None:
    """One process: both towers, one task's batch, with these SessionOptions."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import onnxruntime as ort
    from embedder_throughput import photo_jpeg

    from moderation.conf import moderation_settings
    from moderation.embedders import decode_listing_image
    from moderation.embedders.onnx_clip import OnnxClipEmbedder

    embedder = OnnxClipEmbedder(model_dir=model_dir, threads=1)
    base = memory(os.getpid())
    for tower in (embedder.textual.tower, embedder.visual.tower):
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = 1
        session_options.enable_cpu_mem_arena = arena
        session_options.enable_mem_pattern = pattern
        tower._session = ort.InferenceSession(str(tower.path), session_options, providers=["CPUExecutionProvider"])
        tower._pid = os.getpid()
    batch = moderation_settings.BATCH_SIZE
    jpegs = [photo_jpeg(i) for i in range(batch)]
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        images = [decode_listing_image(data, embedder=embedder) for data in jpegs]
        embedder.embed(texts=[f"red shoes {i}" for i in range(batch)], images=images)
        timings.append(time.perf_counter() - started)
    stage = f"arena {'on' if arena else 'off'}, pattern {'on' if pattern else 'off'}"
    row("one process, batch of 16", model, stage, memory(os.getpid()), base)
    print(f"{'':34} {'':13} {'  (best of 3 batches: ' + format(min(timings), '.2f') + ' s)'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["web", "worker", "options", "all"], default="all")
    parser.add_argument("--model", choices=["vit-b32", "colour-words", "both"], default="both")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = {"vit-b32": VIT_DIR, "colour-words": DEMO_DIR}
    if args.child:  # one measurement that sets Django up in its own process
        part, model, *flags = args.child
        if part == "worker":
            worker(model, models[model])
        else:
            options(model, models[model], arena=flags[0] == "1", pattern=flags[1] == "1")
        return
    import build_vit_b32

    build_vit_b32.ensure(VIT_DIR)
    if not (DEMO_DIR / "config.json").exists():
        from moderation.embedders.demo_model import build_colour_words_model

        build_colour_words_model(DEMO_DIR)
    header()
    chosen = list(models) if args.model == "both" else [args.model]
    parts = ["web", "worker", "options"] if args.part == "all" else [args.part]
    for part in parts:
        for model in chosen:
            if part == "web":
                for preload in (False, True):
                    web(model, models[model], preload=preload)
            elif part == "worker":
                subprocess.run([sys.executable, __file__, "--child", "worker", model], check=True)
            else:
                for arena, pattern in ((1, 1), (0, 1), (1, 0), (0, 0)):
                    child = [sys.executable, __file__, "--child", "options", model, str(arena), str(pattern)]
                    subprocess.run(child, check=True)


if __name__ == "__main__":
    main()
