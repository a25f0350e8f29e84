"""Where scoring a listing's time goes: cProfile of ``moderation.tasks.moderate_batch`` in
one process, the zero-cost embedder (bench/zero_cost.py), no cluster.

Each round saves ``--listings`` new listings (64x64 photos of their own, 50 sellers, as
bench/pipeline_throughput.py saves them), then scores them in batches of ``--batch``
with ``moderate_batch``, as a drain or ``moderation_scan`` would: one round unprofiled
(ms a listing, wall clock; and CPU time, of this process and of its PostgreSQL
backend, which holds under another's load better than the wall clock does), one under
cProfile (the shares). A first round warms the
caches (prompt matrices, the stored thresholds' query) and is not counted. The table
splits the profiled time by the parts of a batch; a second table gives, for the
unprofiled rounds, the time of the statements by the ``moderation`` function that sent
them (the server's work plus the round trip: on a shared 2-core machine, PostgreSQL's
CPU is the workers' too), per listing and as a share of the median round.

    .venv/bin/python bench/scoring_profile.py [--listings 300] [--batch 50] [--rounds 3]

The database (``bench_scoring``) is dropped at the end.
"""

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
DATABASE = "bench_scoring"

# Parts of a batch, as (label, file suffix, function, caller (file suffix, function) or
# None): the cumulative time of the function, or of the calls from that caller only.
# A part absent from the code measured (before or after a change) prints nothing.
PARTS = [
    ("the batch (moderate_batch)", "moderation/tasks.py", "moderate_batch", None),
    ("  writing the scores (record_scores)", "moderation/transitions.py", "record_scores", None),
    ("    the UPDATE ... FROM (VALUES) (update_rows)", "moderation/db.py", "update_rows", None),
    ("      its parameters: pgvector's HalfVector text", "pgvector/halfvec.py", "_to_db", None),
    ("      its parameters: stored_literal", "moderation/vectors.py", "stored_literal", None),
    ("    the decision rows (bulk_create)", "django/db/models/query.py", "bulk_create", None),
    ("  duplicates: the lookup (duplicate_candidates)", "moderation/duplicates.py", "duplicate_candidates", None),
    ("  duplicates: later copies (later_copies, after the write)", "moderation/duplicates.py", "later_copies", None),
    ("    vectors as parameters (vector_literal)", "moderation/vectors.py", "vector_literal", None),
    ("  registry.text_from", "moderation/registry.py", "text_from", None),
    ("  decoding the photos", "moderation/embedders/images.py", "decode_listing_image", None),
    ("  perceptual hashes", "moderation/duplicates.py", "image_phash", None),
    ("  scoring (score_batch, no database)", "moderation/scoring.py", "score_batch", None),
    ("  claims (claim, release)", "moderation/claims.py", "claim", None),
    ("  picture locks", "moderation/claims.py", "lock_pictures", None),
    ("  attempts (start_attempt)", "moderation/transitions.py", "start_attempt", None),
]


def setup(media: str) -> None:
    import json

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "EMBEDDED_PG_DATABASE": DATABASE,
            "MEDIA_ROOT": media,
            "MODERATION_SETTINGS": json.dumps({"EMBEDDER": {"BACKEND": "bench.zero_cost.ZeroCostEmbedder"}}),
            "MODERATION_LOG_LEVEL": "WARNING",
        }
    )
    import psycopg

    from config import embedded_postgres

    params = embedded_postgres.ensure_running()
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    import django

    django.setup()
    import logging

    logging.getLogger("django-q").setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def drop() -> None:
    import psycopg
    from django.db import connections

    from config import embedded_postgres

    connections.close_all()
    with psycopg.connect(dbname="postgres", autocommit=True, **embedded_postgres.ensure_running()) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def save(count: int, first: int) -> list:
    """``count`` new pending listings; returns their (pk, version), in saving order."""
    from django_q.models import OrmQ
    from pipeline_throughput import make_listings, small_photo

    from catalog.models import Listing

    before = set(Listing.objects.values_list("pk", flat=True))
    make_listings(count, lambda i: small_photo(first + i))
    OrmQ.objects.all().delete()  # the drains the saves queued: no cluster runs them
    return [
        (str(pk), version)
        for pk, version in Listing.objects.exclude(pk__in=before).order_by("pk").values_list("pk", "moderation_version")
    ]


class StatementTimer:
    """A Django execute wrapper: wall time of each statement, by the ``moderation``
    function that sent it (the innermost one on the stack), in seconds."""

    def __init__(self):
        self.seconds = {}

    def __call__(self, execute, sql, params, many, context):
        frame = sys._getframe(1)
        while frame is not None and f"{os.sep}moderation{os.sep}" not in frame.f_code.co_filename:
            frame = frame.f_back
        origin = "?" if frame is None else f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}"
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds[origin] = self.seconds.get(origin, 0.0) + time.perf_counter() - started


def backend_cpu_seconds() -> float:
    """CPU seconds (user + system) of the PostgreSQL backend serving this process's
    connection so far, from /proc (Linux): the server's share of scoring, which a wall
    clock on a shared machine mixes with everyone else's."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def score(items: list, batch: int) -> None:
    from moderation.tasks import moderate_batch

    for start in range(0, len(items), batch):
        outcome = moderate_batch("catalog.listing", items[start : start + batch])
        if outcome.get("ok", 0) + outcome.get("flagged", 0) != len(items[start : start + batch]):
            raise SystemExit(f"not every listing was scored: {outcome}")


def part_seconds(stats: pstats.Stats, suffix: str, function: str, caller) -> float:
    total = 0.0
    for (filename, _line, name), (_cc, _nc, _tt, cumulative, callers) in stats.stats.items():
        if name != function or not filename.endswith(suffix):
            continue
        if caller is None:
            total += cumulative
            continue
        for (caller_file, _caller_line, caller_name), timing in callers.items():
            if caller_name == caller[1] and caller_file.endswith(caller[0]):
                total += timing[3]
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listings", type=int, default=300)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="unprofiled rounds (the median is printed)")
    parser.add_argument("--top", type=int, default=0, help="also print the top N functions")
    parser.add_argument("--sort", default="tottime", help="for --top: a pstats key (tottime, cumulative)")
    args = parser.parse_args()
    setup(tempfile.mkdtemp(prefix="bench-media-"))
    try:
        first = 0
        score(save(args.batch, first), args.batch)  # warm-up, not counted
        first += args.batch
        from django.db import connection

        wall, cpu, timer = [], [], StatementTimer()
        for _ in range(args.rounds):
            items = save(args.listings, first)
            first += args.listings
            server = backend_cpu_seconds()
            started, own = time.perf_counter(), time.process_time()
            with connection.execute_wrapper(timer):
                score(items, args.batch)
            own, server = time.process_time() - own, backend_cpu_seconds() - server
            wall.append(1000 * (time.perf_counter() - started) / args.listings)
            cpu.append((1000 * own / args.listings, 1000 * server / args.listings))
        items = save(args.listings, first)
        profile = cProfile.Profile()
        profile.enable()
        score(items, args.batch)
        profile.disable()
        stats = pstats.Stats(profile)
        whole = part_seconds(stats, *PARTS[0][1:])
        median = sorted(wall)[len(wall) // 2]
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        print(
            f"{args.listings} listings in batches of {args.batch}, zero-cost embedder: "
            f"{median:.2f} ms a listing (median of {args.rounds} rounds: "
            f"{', '.join(f'{ms:.2f}' for ms in wall)}), {1000 * whole / args.listings:.2f} under cProfile"
        )
        own, server = (sorted(values)[len(values) // 2] for values in zip(*cpu, strict=True))
        print(
            f"CPU a listing (medians): this process {own:.2f} ms, its PostgreSQL backend {server:.2f} ms, "
            f"together {own + server:.2f} ms"
        )
        print(f"{'part':60s} {'ms/listing':>10s} {'share':>6s}")
        for label, suffix, function, caller in PARTS:
            seconds = part_seconds(stats, suffix, function, caller)
            if seconds:
                print(f"{label:60s} {1000 * seconds / args.listings:10.3f} {seconds / whole:6.1%}")
        scored = args.rounds * args.listings
        print(f"database statements, unprofiled rounds, by the function that sent them ({scored} listings):")
        for origin, seconds in sorted(timer.seconds.items(), key=lambda item: -item[1]):
            print(f"  {origin:58s} {1000 * seconds / scored:10.3f} {seconds * 1000 / scored / median:6.1%}")
        if args.top:
            stats.sort_stats(args.sort).print_stats(args.top)
    finally:
        drop()


if __name__ == "__main__":
    main()
