"""Similar-item search at 100k listings: latency in the database and through the API,
recall@10 of HNSW against exact search, and a filtered search at 10% selectivity.

Listings are bulk-loaded with COPY (clustered 512-dim vectors, as real photos of a
catalogue cluster by kind), then the HNSW indexes are built with
``maintenance_work_mem`` raised. Queries are drawn around the same clusters. The
embedder is the zero-cost one (bench/zero_cost.py): this measures search, not
embedding. Through the API means real HTTP on 127.0.0.1 to gunicorn (2 workers, the
production server; Django's runserver opens a database connection per request).

    .venv/bin/python bench/search_latency.py [--rows 100000] [--queries 200]
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = "bench_search"
MODEL_ID = "bench:zero-cost"


CLUSTERS = 300


@functools.cache
def centres() -> np.ndarray:
    """The cluster centres of the data (and of bench.zero_cost.ClusterEmbedder's queries)."""
    return np.random.default_rng(0).standard_normal((CLUSTERS, 512)).astype(np.float32) / np.sqrt(512)


def clustered(rows: int, queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photo vectors around cluster centres; each text vector near its photo's; queries
    around the same centres. All unit length."""
    rng = np.random.default_rng(1)
    middle = centres()

    def unit(points):
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    def around(n):
        return unit(middle[rng.integers(0, CLUSTERS, n)] + 0.02 * rng.standard_normal((n, 512)).astype(np.float32))

    images = around(rows)
    texts = unit(images + 0.02 * rng.standard_normal(images.shape).astype(np.float32))
    return images, texts, around(queries)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def load(rows: int, images: np.ndarray, texts: np.ndarray) -> None:
    from django.contrib.auth.models import User
    from django.db import connection

    from catalog.models import Category, Listing

    seller = User.objects.create(username="bench-seller")
    common = Category.objects.create(name="Common", slug="common")
    rare = Category.objects.create(name="Rare", slug="rare")  # every tenth listing: 10% selectivity
    image_index, text_index = (
        next(index.name for index in Listing._meta.indexes if index.fields == [field])
        for field in ("image_vector", "text_vector")
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {image_index}")
        cursor.execute(f"DROP INDEX IF EXISTS {text_index}")
        columns = (
            "seller_id, category_id, title, description, price, image, moderation_status, moderation_version, "
            "content_hash, embedding_model, text_vector, image_vector, suggested_categories, flag_reasons, "
            "severity, moderation_error, moderation_error_detail, moderation_attempts, duplicate_of, "
            "created_at, updated_at"
        )
        with cursor.cursor.copy(f"COPY catalog_listing ({columns}) FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row(
                    (
                        seller.pk,
                        rare.pk if i % 10 == 0 else common.pk,
                        f"item {i}",
                        "",
                        i % 500,
                        "x.jpg",
                        "ok",
                        1,
                        "",
                        MODEL_ID,
                        "[" + ",".join(f"{x:.5f}" for x in texts[i]) + "]",
                        "[" + ",".join(f"{x:.5f}" for x in images[i]) + "]",
                        "[]",
                        "{}",
                        0,
                        "",
                        "",
                        0,
                        "",
                        "2026-11-28T00:00:00Z",
                        "2026-11-28T00:00:00Z",
                    )
                )
        cursor.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        cursor.execute(
            f"CREATE INDEX {image_index} ON catalog_listing USING hnsw "
            "(image_vector halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        cursor.execute(
            f"CREATE INDEX {text_index} ON catalog_listing USING hnsw "
            "(text_vector halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        print(f"loaded {rows} listings; both HNSW indexes built in {time.perf_counter() - started:.0f} s")
        cursor.execute("VACUUM ANALYZE catalog_listing")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reuse", action="store_true", help="Keep the listings a previous run loaded.")
    parser.add_argument("--ef", type=int, help="MODERATION['SEARCH_EF'] (default: the app's default)")
    args = parser.parse_args()
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "EMBEDDED_PG_DATABASE": DATABASE,
        "MODERATION_SETTINGS": json.dumps(
            {"EMBEDDER": {"BACKEND": "bench.zero_cost.ZeroCostEmbedder"}, **({"SEARCH_EF": args.ef} if args.ef else {})}
        ),
        "DEBUG": "0",
        "SECRET_KEY": "bench",
        "THROTTLE_SEARCH": "1000000/minute",
    }
    os.environ.update(env)
    import psycopg

    from config import embedded_postgres

    params = embedded_postgres.ensure_running()
    if not args.reuse:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from catalog.models import Listing
    from moderation import search, vectors

    call_command("migrate", verbosity=0)
    images, texts, queries = clustered(args.rows, args.queries)
    if not (args.reuse and Listing.objects.count() == args.rows):
        load(args.rows, images, texts)
    ids = np.array(Listing.objects.order_by("pk").values_list("pk", flat=True))
    rare = np.arange(args.rows) % 10 == 0
    k = 10

    def exact(matrix, query, mask=None):
        scores = matrix @ query
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        return set(ids[np.argsort(-scores)[:k]].tolist())

    kinds = {
        # name: (column searched, query vector for query i, rows allowed)
        "text -> photos (cross-modal)": ("image_vector", lambda i: texts[i * 53 % args.rows], None),
        "photo -> photos": ("image_vector", lambda i: queries[i], None),
        "listing -> listings (text side)": ("text_vector", lambda i: texts[i * 37 % args.rows], None),
        "filtered 10% (category)": ("image_vector", lambda i: queries[i], rare),
    }
    print("'SQL' times the query alone (compiled by the ORM, run on a cursor); 'service' is moderation.search.nearest,")
    print("which adds building the query and making model instances of the results.")
    print(
        f"\n{'query kind':32} {'SQL p50':>8} {'SQL p95':>8} {'service p50':>11} {'service p95':>11} "
        f"{'recall@10':>9} {'returned k':>10}"
    )
    base = Listing.objects.public().filter(embedding_model=MODEL_ID)
    for name, (column, vector_of, mask) in kinds.items():
        queryset = base.filter(category__slug="rare") if mask is not None else base
        matrix = images if column == "image_vector" else texts
        latencies, sql_latencies, recall, full = [], [], [], 0
        for i in range(args.queries):
            vector = vector_of(i)
            sql, params = search.nearest_queryset(queryset, column, vector, k=k).query.sql_with_params()
            with transaction.atomic(), connection.cursor() as cursor:
                vectors.set_index_options(k=k)
                started = time.perf_counter()
                cursor.execute(sql, params)
                cursor.fetchall()
                sql_latencies.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            hits = search.nearest(queryset, column, vector, k=k)
            latencies.append((time.perf_counter() - started) * 1000)
            found = {hit.object.pk for hit in hits}
            recall.append(len(found & exact(matrix, vector, mask)) / k)
            full += len(hits) == k
        print(
            f"{name:32} {statistics.median(sql_latencies):8.2f} {percentile(sql_latencies, 0.95):8.2f} "
            f"{statistics.median(latencies):11.2f} {percentile(latencies, 0.95):11.2f} "
            f"{statistics.mean(recall):9.3f} {full:>5}/{args.queries}"
        )
    with transaction.atomic():
        vectors.set_index_options(k=k)
        plan = search.nearest_queryset(base, "image_vector", queries[0], k=k).explain()
    print("\nplan (no planner hints):", " / ".join(line.strip() for line in plan.splitlines()[:3]))
    connection.close()

    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import requests

        # gunicorn's sync workers close every connection: so does the client, instead of
        # finding out on a reused one.
        session = requests.Session()
        session.headers["Connection"] = "close"
        url = f"http://127.0.0.1:{args.port}/api"
        for _ in range(100):
            try:
                session.get(f"{url}/search/text/", params={"q": "warm up"}, timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        for i in range(20):  # each worker loads the embedder and opens its connection once
            session.get(f"{url}/search/text/", params={"q": f"cluster {i}"})
        print(f"\n{'through the API (HTTP)':32} {'p50 ms':>7} {'p95 ms':>7}")
        for name, request in {
            "GET /api/search/text/": lambda i: session.get(f"{url}/search/text/", params={"q": f"cluster {i}"}),
            "GET /api/search/similar/<id>/": lambda i: session.get(f"{url}/search/similar/{ids[i * 37]}/"),
            "GET /api/search/text/ ?category": lambda i: session.get(
                f"{url}/search/text/", params={"q": f"red thing {i}", "category": "rare"}
            ),
        }.items():
            latencies = []
            for i in range(args.queries):
                started = time.perf_counter()
                response = request(i)
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text[:300]
                assert len(response.json()["results"]) == k
            print(f"{name:32} {statistics.median(latencies):7.2f} {percentile(latencies, 0.95):7.2f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
