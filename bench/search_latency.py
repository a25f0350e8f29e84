"""Similar-item search at 10k, 100k or 1M listings (issue #14): loading and HNSW build cost,
table and index sizes, latency in the database, in the service and through the API, the
ratios between them, recall@10 against exact search, filtered search at 10% and 0.1%
selectivity, and how ``SEARCH_EF`` and pgvector's iterative scan limits move all that.

    .venv/bin/python bench/search_latency.py --rows 10000 --queries 100      # development, ~2 min
    .venv/bin/python bench/search_latency.py --rows 1000000 --maintenance-work-mem 4GB --json var/search-1m.json
    .venv/bin/python bench/search_latency.py --rows 1000000 --reuse           # queries only
    .venv/bin/python bench/search_latency.py --rows 10000 --drop              # drop its database

Each size has its own database on the embedded PostgreSQL (``bench_search_<rows>``), kept
after the run so that ``--reuse`` measures queries on the loaded rows and their indexes
(the indexes are rebuilt only when ``--m``/``--ef-construction`` differ from theirs).
Listings are written by binary COPY (halfvec's binary form: int16 dimensions, int16
unused, float16 big-endian; pgvector's ``halfvec_recv``), generated in chunks
(bench/search_data.py); both HNSW indexes are then built one after the other and measured
(bench/index_build.py). The embedder is bench.zero_cost.ClusterEmbedder: it costs nothing
and embeds "cluster N ..." near cluster N, so that API queries are in distribution.

Latency: "SQL" is the search's statement alone on a cursor (its index options set
beforehand, in the same transaction, untimed); "service" is ``moderation.search.nearest``,
which builds the statement, sets the options and makes model instances. They alternate
query by query, and so do the API requests and the replay of the statement each request
ran (captured in process with ``CaptureQueriesContext``): every ratio is measured in one
run under the same load. The API is real HTTP on 127.0.0.1 to gunicorn with keep-alive
connections (``--worker-class gthread``), through ``http.client``; the server side time is
gunicorn's own request time (access log ``%(D)s``, microseconds).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import index_build, search_data  # noqa: E402

MODEL_ID = "bench:zero-cost"
K = 10
SERVICE_TARGET, API_TARGET = 1.5, 3.0  # issue #14: service p50 / SQL p50, API p50 / SQL p50
HALFVEC_HEADER = struct.pack(">HH", search_data.DIMENSIONS, 0)


def database_name(rows: int) -> str:
    return f"bench_search_{rows}"


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def summary(milliseconds: list[float]) -> dict:
    return {"p50": statistics.median(milliseconds), "p95": percentile(milliseconds, 0.95)}


# -- loading and building -----------------------------------------------------------------


class HalfvecBinary(bytes):
    """A value already in halfvec's binary form (HALFVEC_HEADER + float16 big-endian)."""


def register_halfvec_binary(connection) -> None:
    """Let psycopg COPY ``HalfvecBinary`` values into halfvec columns as they are."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    info = TypeInfo.fetch(connection, "halfvec")
    info.register(connection)

    class HalfvecBinaryDumper(Dumper):
        format = Format.BINARY
        oid = info.oid

        def dump(self, obj):
            return obj

    connection.adapters.register_dumper(HalfvecBinary, HalfvecBinaryDumper)


def halfvec_rows(vectors: np.ndarray) -> list[HalfvecBinary]:
    """Each row of (n, 512) float32 ``vectors`` in halfvec's binary form."""
    big_endian = vectors.astype(">f2")
    return [HalfvecBinary(HALFVEC_HEADER + row.tobytes()) for row in big_endian]


# Every NOT NULL column of catalog_listing without a database default, and its type for
# binary COPY (the exact type: binary COPY does not cast).
CONSTANT_COLUMNS = {
    "image": ("varchar", "x.jpg"),
    "moderation_status": ("varchar", "ok"),
    "moderation_version": ("int4", 1),
    "content_hash": ("varchar", ""),
    "embedding_model": ("varchar", MODEL_ID),
    "suggested_categories": ("jsonb", []),
    "prohibited_items": ("jsonb", []),
    "moderation_thresholds": ("jsonb", {}),
    "flag_reasons": ("varchar[]", []),
    "severity": ("int2", 0),
    "moderation_error": ("varchar", ""),
    "moderation_error_detail": ("text", ""),
    "moderation_attempts": ("int2", 0),
    "duplicate_of": ("varchar", ""),
    "description": ("text", ""),
}


def load(connection, rows: int, seller_id: int, category_ids: dict[str, int]) -> float:
    """COPY ``rows`` listings (binary) into catalog_listing; returns the seconds it took.
    ``connection``: a psycopg connection with ``register_halfvec_binary``."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from psycopg.types.json import Jsonb

    now = datetime(2026, 11, 28, tzinfo=UTC)
    constants = [Jsonb(value) if kind == "jsonb" else value for kind, value in CONSTANT_COLUMNS.values()]
    columns = ["seller_id", "category_id", "title", "price", "created_at", "updated_at", *CONSTANT_COLUMNS]
    types = ["int4", "int8", "varchar", "numeric", "timestamptz", "timestamptz"]
    types += [kind for kind, _ in CONSTANT_COLUMNS.values()] + ["halfvec", "halfvec"]
    columns += ["text_vector", "image_vector"]
    started = time.perf_counter()
    statement = f"COPY catalog_listing ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        for start, images, texts in search_data.chunks(rows):
            numbers = range(start, start + len(images))
            slugs = search_data.categories(np.asarray(numbers))
            text_rows, image_rows = halfvec_rows(texts), halfvec_rows(images)
            for number, slug, text, image in zip(numbers, slugs, text_rows, image_rows, strict=True):
                row = (seller_id, category_ids[slug], f"item {number}", Decimal(number % 500), now, now, *constants)
                copy.write_row((*row, text, image))
            print(f"\r  copied {start + len(images):,}/{rows:,} rows", end="", flush=True)
    connection.commit()
    print()
    return time.perf_counter() - started


def vector_indexes() -> dict[str, str]:
    """{column: index name} of the model's two HNSW indexes."""
    from catalog.models import Listing

    return {index.fields[0]: index.name for index in Listing._meta.indexes if index.fields[0].endswith("_vector")}


def index_options(connection, name: str) -> dict[str, str]:
    """The WITH (...) options of an existing index ({} when it does not exist)."""
    row = connection.execute("SELECT reloptions FROM pg_class WHERE relname = %s AND relkind = 'i'", [name]).fetchone()
    if row is None:
        return {}
    return dict(option.split("=", 1) for option in row[0] or [])


def build_indexes(connection, conninfo: dict, *, m: int, ef_construction: int, maintenance_work_mem: str) -> dict:
    """(Re)build both HNSW indexes one after the other, each measured; the cost is kept as
    the index's comment, so that a ``--reuse`` run can report it. Returns {index: cost}."""
    from psycopg import sql

    costs = {}
    for column, name in vector_indexes().items():
        connection.execute(f"DROP INDEX IF EXISTS {name}")
        connection.commit()
        statement = (
            f"CREATE INDEX {name} ON catalog_listing USING hnsw ({column} halfvec_cosine_ops) "
            f"WITH (m = {m}, ef_construction = {ef_construction})"
        )
        cost = index_build.build(conninfo, statement, maintenance_work_mem=maintenance_work_mem).as_dict()
        comment = sql.SQL("COMMENT ON INDEX {} IS {}").format(sql.Identifier(name), sql.Literal(json.dumps(cost)))
        connection.execute(comment)
        connection.commit()
        costs[name] = cost
    return costs


def stored_build_costs(connection) -> dict:
    """{index: cost} as ``build_indexes`` recorded them."""
    costs = {}
    for name in vector_indexes().values():
        row = connection.execute("SELECT obj_description(%s::regclass, 'pg_class')", [name]).fetchone()
        costs[name] = json.loads(row[0]) if row and row[0] else {}
    return costs


def sizes(connection) -> dict:
    """Bytes and pg_size_pretty of the table (heap, TOAST), each HNSW index, and the total."""
    parts = {
        "heap": "pg_relation_size('catalog_listing')",
        "toast": "pg_total_relation_size((SELECT reltoastrelid FROM pg_class WHERE relname = 'catalog_listing'))",
        "table (heap + TOAST)": "pg_table_size('catalog_listing')",
        **{name: f"pg_relation_size('{name}')" for name in vector_indexes().values()},
        "all indexes": "pg_indexes_size('catalog_listing')",
        "total": "pg_total_relation_size('catalog_listing')",
    }
    result = {}
    for part, expression in parts.items():
        size, pretty = connection.execute(f"SELECT {expression}, pg_size_pretty({expression})").fetchone()
        result[part] = {"bytes": size, "pretty": pretty}
    return result


def prepare(args) -> dict:
    """The database of ``args.rows`` listings with both HNSW indexes, loaded and built
    unless ``--reuse`` finds them; returns what it measured (load, builds, sizes)."""
    import psycopg
    from django.contrib.auth.models import User
    from django.db import connection as django_connection

    from catalog.models import Category, Listing
    from config import embedded_postgres

    conninfo = {**embedded_postgres.ensure_running(), "dbname": database_name(args.rows)}
    report = {"database": conninfo["dbname"]}
    loaded = args.reuse and Listing.objects.count() == args.rows
    with psycopg.connect(**conninfo) as connection:
        report["server"] = {
            name: connection.execute(f"SHOW {name}").fetchone()[0]
            for name in ("server_version", "max_parallel_maintenance_workers", "shared_buffers", "work_mem")
        }
        report["server"]["pgvector"] = connection.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()[0]
        if not loaded:
            Listing.objects.all().delete()
            seller, _ = User.objects.get_or_create(username="bench-seller")
            category_ids = {
                slug: Category.objects.get_or_create(slug=slug, defaults={"name": slug})[0].pk
                for slug in search_data.CATEGORIES
            }
            django_connection.close()
            for name in vector_indexes().values():
                connection.execute(f"DROP INDEX IF EXISTS {name}")
            connection.commit()
            register_halfvec_binary(connection)
            report["copy_seconds"] = load(connection, args.rows, seller.pk, category_ids)
            started = time.perf_counter()
            connection.autocommit = True
            connection.execute("VACUUM ANALYZE catalog_listing")
            connection.autocommit = False
            report["vacuum_analyze_seconds"] = time.perf_counter() - started
        wanted = {"m": str(args.m), "ef_construction": str(args.ef_construction)}
        if not loaded or any(index_options(connection, name) != wanted for name in vector_indexes().values()):
            report["builds"] = build_indexes(
                connection,
                conninfo,
                m=args.m,
                ef_construction=args.ef_construction,
                maintenance_work_mem=args.maintenance_work_mem,
            )
        else:
            report["builds"] = stored_build_costs(connection)
            report["builds_reused"] = True
        report["sizes"] = sizes(connection)
    return report


def print_preparation(report: dict) -> None:
    print(f"database {report['database']}; server: {report['server']}")
    if "copy_seconds" in report:
        print(f"binary COPY {report['copy_seconds']:.1f} s, VACUUM ANALYZE {report['vacuum_analyze_seconds']:.1f} s")
    reused = " (built by an earlier run, reused)" if report.get("builds_reused") else ""
    print(f"\nHNSW builds{reused}:")
    print(
        f"{'index':34} {'wall s':>7} {'CPU s':>7} {'backend':>8} {'workers':>8} {'n':>2} "
        f"{'m_w_m':>6} {'fit':>4} {'peak private':>12} {'peak shared':>11}"
    )
    for name, cost in report["builds"].items():
        if not cost:
            print(f"{name:34} (not recorded)")
            continue
        print(
            f"{name:34} {cost['wall_seconds']:7.1f} {cost['cpu_seconds']:7.1f} {cost['backend_cpu_seconds']:8.1f} "
            f"{cost['workers_cpu_seconds']:8.1f} {cost['workers']:>2} {cost['maintenance_work_mem']:>6} "
            f"{'yes' if cost['graph_fit'] else 'NO':>4} {cost['peak_private_bytes'] / 2**20:9.0f} MB "
            f"{cost['peak_shared_bytes'] / 2**20:8.0f} MB"
        )
        for notice in cost["notices"]:
            print(f"  NOTICE: {notice}")
    print("\nsizes:")
    for part, size in report["sizes"].items():
        print(f"  {part:34} {size['pretty']:>10} {size['bytes']:>14,} bytes")


# -- searches in process ------------------------------------------------------------------


@dataclass
class Kind:
    """One kind of search: ``queries`` (n, 512) against ``column``, within ``category``
    (a slug) or all rows; ``expected``: the ids of the exact top k of each query."""

    name: str
    column: str
    queries: np.ndarray
    category: str | None
    expected: list[set]


def kinds(ids: np.ndarray, images: np.ndarray, texts: np.ndarray, n: int) -> list[Kind]:
    """The five kinds of issue #14, with their exact answers (numpy, float32)."""
    rows = len(ids)
    around = search_data.queries(n)
    slugs = search_data.categories(np.arange(rows))
    specs = [
        # name, column searched, its matrix, queries, category
        ("text -> photos (cross-modal)", "image_vector", images, texts[np.arange(n) * 53 % rows], None),
        ("photo -> photos", "image_vector", images, around, None),
        ("listing -> listings (text side)", "text_vector", texts, texts[np.arange(n) * 37 % rows], None),
        ("filtered 10% (category)", "image_vector", images, around, search_data.TEN_PERCENT),
        ("filtered 0.1% (category)", "image_vector", images, around, search_data.TENTH_PERCENT),
    ]
    result = []
    for name, column, matrix, queries, category in specs:
        allowed = None if category is None else np.flatnonzero(slugs == category)
        exact = search_data.exact_neighbours(matrix, queries, k=K, rows=allowed)
        result.append(Kind(name, column, queries, category, [set(ids[row].tolist()) for row in exact]))
    return result


def searched(kind: Kind):
    """The queryset a kind searches: public rows of the bench's model id, in its category."""
    from catalog.models import Category, Listing

    queryset = Listing.objects.public().filter(embedding_model=MODEL_ID)
    if kind.category is None:
        return queryset
    # As the demo's API filters (catalog.serializers.ListingSearchFilters): by the key.
    return queryset.filter(category_id=Category.objects.get(slug=kind.category).pk)


@contextlib.contextmanager
def index_options_set(**extra: str):
    """A transaction with the app's index options for k (vectors.set_index_options) and
    ``extra`` pgvector settings (SET LOCAL), e.g. ``{"hnsw.max_scan_tuples": "20000"}``."""
    from django.db import connection, transaction

    from moderation import vectors

    with transaction.atomic():
        vectors.set_index_options(k=K)
        with connection.cursor() as cursor:
            for name, value in extra.items():
                cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        yield


def timed_sql(sql: str, params, **extra: str) -> tuple[float, list]:
    """(milliseconds, rows) of one statement on a cursor; its index options are set
    beforehand in the same transaction, untimed."""
    from django.db import connection

    with index_options_set(**extra), connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        return (time.perf_counter() - started) * 1000, rows


def measure(kind: Kind, *, service: bool = True, **extra: str) -> dict:
    """SQL (and service) p50/p95 in ms, recall@10 and how many queries returned k, over
    ``kind``'s queries; SQL and service alternate query by query, and which of the two
    runs a query vector first alternates too: the first pays for reading the index pages
    that query visits (at 1M rows the indexes outgrow shared_buffers), the second finds
    them cached."""
    from moderation import search

    queryset = searched(kind)
    sql_ms, service_ms, recalls, full = [], [], [], 0
    for number, (vector, expected) in enumerate(zip(kind.queries, kind.expected, strict=True)):
        sql, params = search.nearest_queryset(queryset, kind.column, vector, k=K).query.sql_with_params()
        service_first = service and number % 2 == 1
        if service_first:
            started = time.perf_counter()
            search.nearest(queryset, kind.column, vector, k=K)
            service_ms.append((time.perf_counter() - started) * 1000)
        milliseconds, rows = timed_sql(sql, params, **extra)
        sql_ms.append(milliseconds)
        if service and not service_first:
            started = time.perf_counter()
            search.nearest(queryset, kind.column, vector, k=K)
            service_ms.append((time.perf_counter() - started) * 1000)
        found = {row[0] for row in rows}  # the primary key comes first
        recalls.append(len(found & expected) / K)
        full += len(rows) == K
    result = {
        "sql": summary(sql_ms),
        "recall@10": statistics.mean(recalls),
        "returned_k": full,
        "queries": len(sql_ms),
        "uses_hnsw": uses_hnsw(kind, **extra),
    }
    if service:
        result["service"] = summary(service_ms)
        result["service_ratio"] = result["service"]["p50"] / result["sql"]["p50"]
    return result


def plan(kind: Kind, **extra: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the kind's first query, with the app's index options
    (the query vector's literal shortened to '[...]')."""
    from moderation import search

    with index_options_set(**extra):
        text = search.nearest_queryset(searched(kind), kind.column, kind.queries[0], k=K).explain(
            analyze=True, buffers=True
        )
    return re.sub(r"'\[[^']*\]'", "'[...]'", text)


def uses_hnsw(kind: Kind, **extra: str) -> bool:
    """Whether the planner searches the kind through an HNSW index (EXPLAIN, not run)."""
    from moderation import search

    with index_options_set(**extra):
        text = search.nearest_queryset(searched(kind), kind.column, kind.queries[0], k=K).explain()
    return any(name in text for name in vector_indexes().values())


def ef_sweep(all_kinds: list[Kind], efs: list[int]) -> dict:
    """{ef: {kind: measure}} with MODERATION['SEARCH_EF'] set to each value in this process."""
    from django.conf import settings
    from django.test import override_settings

    results = {}
    for ef in efs:
        with override_settings(MODERATION={**settings.MODERATION, "SEARCH_EF": ef}):
            results[ef] = {kind.name: measure(kind) for kind in all_kinds}
        print_kinds(f"SEARCH_EF = {ef} (hnsw.ef_search = max(ef, 4k))", results[ef])
    return results


def scan_limits(kind: Kind, max_scan_tuples: list[int], multipliers: list[float]) -> list[dict]:
    """pgvector's iterative scan limits for one kind: SQL latency, recall and returned k
    for each hnsw.max_scan_tuples x hnsw.scan_mem_multiplier (defaults 20000 and 1), with
    the planner's choice of plan and with the HNSW index forced (``enable_sort = off``:
    the limits only matter on that path, which the planner may not take)."""
    results = []
    for forced in (False, True):
        for tuples in max_scan_tuples:
            for multiplier in multipliers:
                extra = {"hnsw.max_scan_tuples": str(tuples), "hnsw.scan_mem_multiplier": str(multiplier)}
                if forced:
                    extra["enable_sort"] = "off"
                result = measure(kind, service=False, **extra)
                results.append(
                    {"max_scan_tuples": tuples, "scan_mem_multiplier": multiplier, "forced_hnsw": forced, **result}
                )
    return results


def print_kinds(title: str, results: dict) -> None:
    print(f"\n{title}")
    print(
        f"{'query kind':32} {'SQL p50':>8} {'SQL p95':>8} {'service p50':>11} {'service p95':>11} "
        f"{'ratio':>6} {'recall@10':>9} {'returned k':>10} {'plan':>6}"
    )
    for name, result in results.items():
        print(
            f"{name:32} {result['sql']['p50']:8.2f} {result['sql']['p95']:8.2f} {result['service']['p50']:11.2f} "
            f"{result['service']['p95']:11.2f} {result['service_ratio']:6.2f} {result['recall@10']:9.3f} "
            f"{result['returned_k']:>5}/{result['queries']} {'HNSW' if result['uses_hnsw'] else 'exact':>6}"
        )
    print(f"ratio = service p50 / SQL p50 (target <= {SERVICE_TARGET}); plan: HNSW index, or exact (filter + sort)")


def print_scan_limits(name: str, results: list[dict]) -> None:
    print(f"\niterative scan limits, {name} (SQL only, app's SEARCH_EF; forced: enable_sort = off):")
    print(
        f"{'max_scan_tuples':>15} {'mem multiplier':>14} {'forced':>6} {'plan':>6} {'SQL p50':>8} {'SQL p95':>8} "
        f"{'recall@10':>9} {'returned k':>10}"
    )
    for result in results:
        print(
            f"{result['max_scan_tuples']:>15} {result['scan_mem_multiplier']:>14} "
            f"{'yes' if result['forced_hnsw'] else 'no':>6} {'HNSW' if result['uses_hnsw'] else 'exact':>6} "
            f"{result['sql']['p50']:8.2f} {result['sql']['p95']:8.2f} "
            f"{result['recall@10']:9.3f} {result['returned_k']:>5}/{result['queries']}"
        )


# -- through the API ----------------------------------------------------------------------


def endpoints(ids: np.ndarray, n: int) -> dict[str, Callable[[int], str]]:
    """{endpoint: the path of its i-th request}; every path is requested once."""

    def text(i, **filters):
        return f"/api/search/text/?{urlencode({'q': f'cluster {i}', **filters})}"

    return {
        "GET /api/search/text/": text,
        "GET /api/search/similar/<id>/": lambda i: f"/api/search/similar/{ids[i * 37 % len(ids)]}/",
        "GET /api/search/text/?category= (10%)": lambda i: text(i, category=search_data.TEN_PERCENT),
        "GET /api/search/text/?category= (0.1%)": lambda i: text(i, category=search_data.TENTH_PERCENT),
    }


def search_statements(path: str) -> list[str]:
    """The search statements (those with pgvector's ``<=>``: one, two for "more like this")
    a request of ``path`` runs, run in process through Django's test client and captured."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = Client(HTTP_HOST="127.0.0.1").get(path)
    assert response.status_code == 200, response.content[:300]
    return [query["sql"] for query in captured.captured_queries if "<=>" in query["sql"]]


def timed_statements(statements: list[str]) -> float:
    """Milliseconds of ``statements`` run one after the other (``timed_sql`` each)."""
    return sum(timed_sql(statement, None)[0] for statement in statements)


@contextlib.contextmanager
def gunicorn(port: int, *, workers: int, threads: int, worker_class: str, access_log: Path):
    """gunicorn serving the demo site on 127.0.0.1:``port``, its access log giving each
    request's time in microseconds (``%(D)s``) after the request line."""
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "config.wsgi",
            f"--bind=127.0.0.1:{port}",
            f"--workers={workers}",
            f"--worker-class={worker_class}",
            f"--threads={threads}",
            "--keep-alive=60",
            f"--access-logfile={access_log}",
            "--access-logformat=%(r)s %(s)s %(D)s",
        ],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


class HttpClient:
    """One keep-alive HTTP/1.1 connection (``http.client``), as a proxy in front of the
    servers holds."""

    def __init__(self, port: int):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[float, int, bytes]:
        """(milliseconds, status, body) of one GET."""
        started = time.perf_counter()
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        return (time.perf_counter() - started) * 1000, response.status, body

    def wait_until_up(self) -> None:
        for _ in range(300):
            try:
                self.get("/api/search/text/?q=warm+up")
                return
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer on port {self.port}")


def server_times(access_log: Path) -> dict[str, float]:
    """{path: milliseconds inside gunicorn} from the access log (each path requested once)."""
    times = {}
    for line in access_log.read_text().splitlines():
        request, _status, microseconds = line.rsplit(" ", 2)
        times[request.split()[1]] = int(microseconds) / 1000
    return times


def measure_api(args, ids: np.ndarray) -> dict:
    """Per endpoint: client and server p50/p95 and the bare SQL p50/p95 of the same searches
    (statements captured beforehand, replayed alternately with the requests), and the ratios."""
    paths = {name: [path_of(i) for i in range(args.queries)] for name, path_of in endpoints(ids, args.queries).items()}
    statements = {name: [search_statements(path) for path in named] for name, named in paths.items()}
    from django.db import connection

    connection.close()  # the bench's connection is not the servers' business
    access_log = Path(tempfile.mkdtemp(prefix="bench-search-")) / "access.log"
    results = {}
    options = {"workers": args.workers, "threads": args.threads, "worker_class": args.worker_class}
    with gunicorn(args.port, access_log=access_log, **options):
        client = HttpClient(args.port)
        client.wait_until_up()
        for path_of in endpoints(ids, args.queries).values():  # each worker warms its embedder and connection
            for i in range(30):
                client.get(path_of(args.queries + i))
        client_ms = {}
        sql_ms = {}
        for name in paths:
            client_ms[name], sql_ms[name] = [], []
            for number, (path, statement) in enumerate(zip(paths[name], statements[name], strict=True)):
                # Who meets the query first alternates, as in ``measure``: the first may pay
                # for reading index pages that the second finds cached.
                if number % 2:
                    milliseconds, status, body = client.get(path)
                    sql_ms[name].append(timed_statements(statement))
                else:
                    sql_ms[name].append(timed_statements(statement))
                    milliseconds, status, body = client.get(path)
                client_ms[name].append(milliseconds)
                assert status == 200, body[:300]
                assert len(json.loads(body)["results"]) == K or "0.1%" in name, body[:300]
        time.sleep(0.5)  # the last access log lines
    logged = server_times(access_log)
    for name in paths:
        server_ms = [logged[path] for path in paths[name]]
        sql = summary(sql_ms[name])
        client, server = summary(client_ms[name]), summary(server_ms)
        results[name] = {
            "sql": sql,
            "client": client,
            "server": server,
            "client_ratio": client["p50"] / sql["p50"],
            "server_ratio": server["p50"] / sql["p50"],
        }
    results["server_options"] = options
    return results


def print_api(results: dict) -> None:
    options = results["server_options"]
    print(
        f"\nthrough the API: gunicorn --worker-class {options['worker_class']} --workers {options['workers']} "
        f"--threads {options['threads']}, keep-alive http.client; 'server' = gunicorn's request time (%(D)s)"
    )
    print(
        f"{'endpoint':40} {'SQL p50':>8} {'client p50':>10} {'client p95':>10} {'ratio':>6} "
        f"{'server p50':>10} {'server p95':>10} {'ratio':>6}"
    )
    for name, result in results.items():
        if name == "server_options":
            continue
        print(
            f"{name:40} {result['sql']['p50']:8.2f} {result['client']['p50']:10.2f} {result['client']['p95']:10.2f} "
            f"{result['client_ratio']:6.2f} {result['server']['p50']:10.2f} {result['server']['p95']:10.2f} "
            f"{result['server_ratio']:6.2f}"
        )
    print(f"ratio = API p50 / bare SQL p50 of the same searches (target <= {API_TARGET})")


# -- the run ------------------------------------------------------------------------------


def numbers(text: str, kind=int) -> list:
    return [kind(value) for value in text.split(",") if value]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="per kind and per endpoint")
    parser.add_argument("--reuse", action="store_true", help="keep the listings and indexes of an earlier run")
    parser.add_argument("--drop", action="store_true", help="drop the database of --rows and stop")
    parser.add_argument("--m", type=int, default=16, help="HNSW m")
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--maintenance-work-mem", default="1GB", help="for the HNSW builds")
    parser.add_argument(
        "--ef",
        type=lambda text: numbers(text),
        default=[40, 100, 160, 320],
        help="MODERATION['SEARCH_EF'] values to measure (the app's default is added)",
    )
    parser.add_argument("--max-scan-tuples", type=lambda text: numbers(text), default=[20_000, 100_000])
    parser.add_argument("--scan-mem-multiplier", type=lambda text: numbers(text, float), default=[1, 4])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--no-api", action="store_true", help="skip the HTTP part")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    return parser.parse_args()


def drop_database(rows: int) -> None:
    import psycopg

    from config import embedded_postgres

    with psycopg.connect(dbname="postgres", autocommit=True, **embedded_postgres.ensure_running()) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {database_name(rows)} WITH (FORCE)")
    print(f"dropped {database_name(rows)}")


def main() -> None:
    args = parse_args()
    if args.drop:
        drop_database(args.rows)
        return
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "EMBEDDED_PG_DATABASE": database_name(args.rows),
            "MODERATION_SETTINGS": json.dumps({"EMBEDDER": {"BACKEND": "bench.zero_cost.ClusterEmbedder"}}),
            "DEBUG": "0",
            "SECRET_KEY": "bench",
            "THROTTLE_SEARCH": "1000000/minute",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    from catalog.models import Listing
    from moderation.conf import moderation_settings

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    report = {"rows": args.rows, "queries": args.queries, "k": K, "m": args.m, "ef_construction": args.ef_construction}
    report["preparation"] = prepare(args)
    print_preparation(report["preparation"])
    images, texts = search_data.vectors(args.rows)
    ids = np.array(Listing.objects.order_by("pk").values_list("pk", flat=True))
    assert len(ids) == args.rows
    all_kinds = kinds(ids, images, texts, args.queries)
    del images, texts
    by_name = {kind.name: kind for kind in all_kinds}
    for name in ("filtered 10% (category)", "filtered 0.1% (category)"):
        text = plan(by_name[name])
        report.setdefault("plans", {})[name] = text
        print(f"\nplan of {name}, app's options:\n  " + "\n  ".join(text.splitlines()))
    default_ef = moderation_settings.SEARCH_EF
    report["default_ef"] = default_ef
    print(f"\n(exact answers and plans after {time.perf_counter() - started:.0f} s)")
    report["ef"] = ef_sweep(all_kinds, sorted({*args.ef, default_ef}))
    tenth = by_name["filtered 0.1% (category)"]
    report["scan_limits"] = scan_limits(tenth, args.max_scan_tuples, args.scan_mem_multiplier)
    print_scan_limits(tenth.name, report["scan_limits"])
    print(f"(sweeps done after {time.perf_counter() - started:.0f} s)")
    if not args.no_api:
        report["api"] = measure_api(args, ids)
        print_api(report["api"])
    report["seconds"] = time.perf_counter() - started
    print(f"\nwhole run {report['seconds']:.0f} s (loading and building included when done)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
