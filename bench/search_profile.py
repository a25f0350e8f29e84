"""Where a search request's time goes, measured in one process: the bare SQL, the
search service, and a whole request through Django's WSGI handler, then cProfile's
account of the request by layer and the top functions outside the database.

"Bare SQL" is the search statement the service sent (captured, then run again on a
cursor inside a transaction with the index options already set), "service" is
``moderation.search.by_text`` / ``similar_to`` over the queryset the API searches,
"request" is a GET through ``django.core.handlers.wsgi.WSGIHandler`` (the middleware,
DRF's authentication, throttling, content negotiation, the serializers and the JSON
rendering; no HTTP server, no test client). The three are interleaved query by query,
so the ratios hold on a busy machine even when the absolute times do not.

Listings are bulk-loaded with COPY as bench/search_latency.py does (clustered 512-dim
vectors; the embedder is the zero-cost one that puts "cluster N" near cluster N,
bench/zero_cost.py), into a database of their own.

    .venv/bin/python bench/search_profile.py [--rows 30000] [--queries 200] [--reuse]
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
DATABASE = "bench_profile"
K = 10

# Layers of a request, as (file suffix, function): cumulative ms per request in the profile.
LAYERS = [
    ("the whole request (WSGIHandler)", "django/core/handlers/wsgi.py", "__call__"),
    ("  DRF dispatch (view, auth, throttle, render)", "rest_framework/views.py", "dispatch"),
    ("    authentication", "rest_framework/views.py", "perform_authentication"),
    ("    throttling", "rest_framework/views.py", "check_throttles"),
    ("    content negotiation", "rest_framework/views.py", "perform_content_negotiation"),
    ("    parameters (serializer validation)", "moderation/api/views.py", "get_parameters"),
    ("    the service: by_text", "moderation/search.py", "by_text"),
    ("    the service: similar_to", "moderation/search.py", "similar_to"),
    ("      embedding the text", "moderation/embedders/base.py", "embed_texts"),
    ("      vector as a parameter", "moderation/vectors.py", "vector_literal"),
    ("      ORM: compiling SQL", "django/db/models/sql/compiler.py", "as_sql"),
    ("      database round trips (Django cursor)", "django/db/backends/utils.py", "_execute"),
    ("      model instances (from_db)", "django/db/models/base.py", "from_db"),
    ("    results serializer (.data)", "moderation/api/views.py", "respond"),
    ("  rendering JSON", "rest_framework/response.py", "rendered_content"),
]


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def wsgi_get(application, path: str, query: str = "") -> dict:
    """GET ``path`` through the WSGI application, as a JSON API client would ask; the decoded body."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "application/json",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status = []
    response = application(environ, lambda line, headers, exc_info=None: status.append(line))
    try:
        body = b"".join(response)
    finally:
        response.close()  # request_finished: what a WSGI server does after each response
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def search_statements(captured: list[dict]) -> list[str]:
    """The searches among the statements a service call sent (those ordering by a vector
    distance: one, two for "more like this"), without the index options sent in the same message."""
    return [
        sql.split(";", 1)[1].strip() if sql.lstrip().upper().startswith("SELECT SET_CONFIG") else sql
        for sql in (query["sql"] for query in captured if "<=>" in query["sql"])
    ]


def layer_table(stats: pstats.Stats, requests: int) -> list[str]:
    lines = []
    for label, suffix, function in LAYERS:
        calls, total = 0, 0.0
        for (filename, _line, name), (_cc, ncalls, _tt, cumulative, _callers) in stats.stats.items():
            if name == function and filename.endswith(suffix):
                calls += ncalls
                total += cumulative
        if calls:
            lines.append(f"{label:52} {total / requests * 1000:8.3f} {calls / requests:8.1f}")
    return lines


def top_outside_database(stats: pstats.Stats, requests: int, count: int) -> list[str]:
    """The functions with the most own time (tottime), psycopg's (the driver and the wait
    for the server) summed apart."""
    database, rows = 0.0, []
    for (filename, line, name), (_cc, ncalls, own, cumulative, _callers) in stats.stats.items():
        if "psycopg" in filename or "psycopg" in name:
            database += own
        else:
            where = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
            rows.append((own, cumulative, ncalls, f"{where}:{line}({name})"))
    rows.sort(reverse=True)
    lines = [f"{'in psycopg (driver + waiting for the server)':80} {database / requests * 1000:8.3f}"]
    lines += [
        f"{name[-80:]:80} {own / requests * 1000:8.3f} {cum / requests * 1000:8.3f} {n / requests:6.1f}"
        for own, cum, n, name in rows[:count]
    ]
    return lines


def load(rows: int, images, texts) -> None:
    """COPY ``rows`` scored public listings (every tenth in the category "rare"), then build
    both HNSW indexes. Columns not named here get their model default, so that a new column
    does not break the load."""
    from django.contrib.auth.models import User
    from django.db import connection

    from catalog.models import Category, Listing
    from moderation.vectors import vector_literal

    seller = User.objects.create(username="bench-seller")
    common = Category.objects.create(name="Common", slug="common")
    rare = Category.objects.create(name="Rare", slug="rare")
    indexes = [index for index in Listing._meta.indexes if index.fields[0] in ("image_vector", "text_vector")]
    fields = [field for field in Listing._meta.concrete_fields if not field.primary_key]
    defaults = {
        field.column: field.get_db_prep_save(field.get_default(), connection)
        for field in fields
        if not field.null and field.has_default()
    }
    with connection.cursor() as cursor:
        for index in indexes:
            cursor.execute(f"DROP INDEX IF EXISTS {index.name}")
        columns = [field.column for field in fields]
        with cursor.cursor.copy(f"COPY catalog_listing ({', '.join(columns)}) FROM STDIN") as copy:
            for i in range(rows):
                values = {
                    **defaults,
                    "seller_id": seller.pk,
                    "category_id": rare.pk if i % 10 == 0 else common.pk,
                    "title": f"item {i}",
                    "description": "",
                    "price": i % 500,
                    "image": "x.jpg",
                    "moderation_status": "ok",
                    "content_hash": "",
                    "embedding_model": "bench:zero-cost",
                    "text_vector": vector_literal(texts[i]),
                    "image_vector": vector_literal(images[i]),
                    "duplicate_of": "",
                    "moderation_error": "",
                    "moderation_error_detail": "",
                    "created_at": "2026-11-28T00:00:00Z",
                    "updated_at": "2026-11-28T00:00:00Z",
                }
                copy.write_row([values.get(column) for column in columns])
        cursor.execute("SET maintenance_work_mem = '512MB'")
        started = time.perf_counter()
        for index in indexes:
            cursor.execute(index.create_sql(Listing, connection.schema_editor()).__str__())
        print(f"loaded {rows} listings; both HNSW indexes built in {time.perf_counter() - started:.0f} s")
        cursor.execute("VACUUM ANALYZE catalog_listing")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--profiled", type=int, default=200, help="requests of each kind under cProfile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--reuse", action="store_true", help="Keep the listings a previous run loaded.")
    args = parser.parse_args()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "EMBEDDED_PG_DATABASE": DATABASE,
            "MODERATION_SETTINGS": json.dumps({"EMBEDDER": {"BACKEND": "bench.zero_cost.ClusterEmbedder"}}),
            "DEBUG": "0",
            "SECRET_KEY": "bench",
            "THROTTLE_SEARCH": "1000000/minute",
        }
    )
    import psycopg

    from config import embedded_postgres

    params = embedded_postgres.ensure_running()
    if not args.reuse:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.urls import resolve
    from search_data import vectors as clustered_vectors

    from catalog.models import Category, Listing
    from moderation import search, vectors
    from moderation.models import VECTOR_FIELDS

    call_command("migrate", verbosity=0)
    if not (args.reuse and Listing.objects.count() == args.rows):
        images, texts = clustered_vectors(args.rows)
        load(args.rows, images, texts)
    source = resolve("/api/search/text/").func.view_initkwargs["queryset"]  # what the API searches
    ids = list(Listing.objects.order_by("pk").values_list("pk", flat=True))
    listings = Listing.objects.defer(*VECTOR_FIELDS).in_bulk([ids[i * 37 % len(ids)] for i in range(args.queries)])
    application = WSGIHandler()
    rare = Category.objects.get(slug="rare").pk

    kinds = {
        # name: (the service call for query i, the request's path and query string for query i)
        "text": (
            lambda i: search.by_text(source, f"cluster {i}", k=K),
            lambda i: ("/api/search/text/", f"q=cluster+{i}"),
        ),
        "similar": (
            lambda i: search.similar_to(listings[ids[i * 37 % len(ids)]], k=K, source=source),
            lambda i: (f"/api/search/similar/{ids[i * 37 % len(ids)]}/", ""),
        ),
        "filtered 10%": (
            lambda i: search.by_text(source, f"cluster {i}", k=K, filters={"category_id": rare}),
            lambda i: ("/api/search/text/", f"q=cluster+{i}&category=rare"),
        ),
    }

    print(f"{args.rows} listings, {args.queries} queries of each kind, k={K}; times in ms, one process.")
    print("\nstatements of one request of each kind (what the database sees):")
    for name, (_service, request) in kinds.items():
        with CaptureQueriesContext(connection) as captured:
            wsgi_get(application, *request(0))
        print(f"  {name}: {len(captured.captured_queries)}")
        for query in captured.captured_queries:
            print(f"    {' '.join(query['sql'].split())[:110]}")

    print(
        f"\n{'kind':14} {'SQL p50':>8} {'service p50':>11} {'request p50':>11} "
        f"{'service/SQL':>11} {'request/SQL':>11} {'SQL p95':>8} {'svc p95':>8} {'req p95':>8}"
    )
    for name, (service, request) in kinds.items():
        timings = {"sql": [], "service": [], "request": []}
        for i in range(args.queries):
            with CaptureQueriesContext(connection) as captured:
                hits = service(i)  # also the warm-up of this query's pages
            assert len(hits) == K, (name, i, len(hits))
            searches = search_statements(captured.captured_queries)

            def bare(searches=searches):
                elapsed = 0.0
                for sql in searches:
                    with transaction.atomic(), connection.cursor() as cursor:
                        vectors.set_index_options(k=K)
                        started = time.perf_counter()
                        cursor.execute(sql)
                        cursor.fetchall()
                        elapsed += time.perf_counter() - started
                return elapsed

            def timed(call):
                started = time.perf_counter()
                call()
                return time.perf_counter() - started

            steps = [
                ("sql", bare),
                ("service", lambda i=i, service=service: timed(lambda: service(i))),
                ("request", lambda i=i, request=request: timed(lambda: wsgi_get(application, *request(i)))),
            ]
            for key, step in steps[i % 3 :] + steps[: i % 3]:  # rotate the order: no step always goes first
                timings[key].append(step() * 1000)
        sql, svc, req = (statistics.median(timings[key]) for key in ("sql", "service", "request"))
        print(
            f"{name:14} {sql:8.2f} {svc:11.2f} {req:11.2f} {svc / sql:11.2f} {req / sql:11.2f} "
            f"{percentile(timings['sql'], 0.95):8.2f} {percentile(timings['service'], 0.95):8.2f} "
            f"{percentile(timings['request'], 0.95):8.2f}"
        )

    for name, (_service, request) in kinds.items():
        profile = cProfile.Profile()
        profile.enable()
        for i in range(args.profiled):
            wsgi_get(application, *request(i))
        profile.disable()
        stats = pstats.Stats(profile)
        print(f"\n-- profile of {args.profiled} requests, {name} (cProfile; its own overhead inflates Python time)")
        print(f"{'layer':52} {'ms/req':>8} {'calls/req':>8}")
        print("\n".join(layer_table(stats, args.profiled)))
        print(f"\n{'top functions by own time (tottime)':80} {'ms/req':>8} {'cum':>8} {'calls':>6}")
        print("\n".join(top_outside_database(stats, args.profiled, args.top)))
    connection.close()


if __name__ == "__main__":
    main()
