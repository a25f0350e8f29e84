"""How to store 512-dim vectors: vector (default storage), vector with PLAIN storage, or halfvec.

Loads the same clustered vectors into three tables of the embedded PostgreSQL and
measures, in one run: table and index size, exact top-10 scan time, HNSW build time,
HNSW top-10 latency and recall@10 against exact float32 search done in numpy.

    .venv/bin/python bench/vector_storage.py [--rows 50000] [--queries 100]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import embedded_postgres

LAYOUTS = {
    "vector (default storage)": ("vector(512)", None, "vector_cosine_ops"),
    "vector, STORAGE PLAIN": ("vector(512)", "PLAIN", "vector_cosine_ops"),
    "halfvec": ("halfvec(512)", None, "halfvec_cosine_ops"),
}


def clustered(rows: int, queries: int, dims: int = 512, clusters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Rows and queries drawn around the same cluster centres, as listings and searches are."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((clusters, dims)).astype(np.float32)

    def around(n):
        points = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dims)).astype(np.float32)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    return around(rows), around(queries)


def literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in vector) + "]"


def timed(conn, sql, params=None) -> tuple[float, list]:
    started = time.perf_counter()
    rows = conn.execute(sql, params).fetchall()
    return (time.perf_counter() - started) * 1000, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    params = embedded_postgres.ensure_running(database="bench_storage")
    data, queries = clustered(args.rows, args.queries)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    print(f"{args.rows} rows x 512 dims, {args.queries} queries, PostgreSQL embedded\n")
    header = (
        f"{'layout':26} {'table MB':>8} {'exact ms':>9} {'build s':>8} {'index MB':>9} {'hnsw p50':>9} "
        f"{'hnsw p95':>9} {'recall':>7}"
    )
    print(header)
    with psycopg.connect(dbname="bench_storage", autocommit=True, **params) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        for name, (column, storage, opclass) in LAYOUTS.items():
            conn.execute("DROP TABLE IF EXISTS items")
            conn.execute(f"CREATE TABLE items (id int PRIMARY KEY, embedding {column})")
            if storage:
                conn.execute(f"ALTER TABLE items ALTER COLUMN embedding SET STORAGE {storage}")
            with conn.cursor().copy("COPY items (id, embedding) FROM STDIN") as copy:
                for i, vector in enumerate(data):
                    copy.write_row((i, literal(vector)))
            conn.execute("VACUUM ANALYZE items")
            table_mb = conn.execute("SELECT pg_total_relation_size('items')").fetchone()[0] / 2**20
            cast = column.split("(")[0]
            conn.execute("SET enable_indexscan = off")
            exact = [
                timed(conn, f"SELECT id FROM items ORDER BY embedding <=> %s::{cast} LIMIT 10", (literal(q),))[0]
                for q in queries[:20]
            ]
            conn.execute("SET enable_indexscan = on")
            started = time.perf_counter()
            conn.execute(f"CREATE INDEX ON items USING hnsw (embedding {opclass}) WITH (m = 16, ef_construction = 64)")
            build_s = time.perf_counter() - started
            index_mb = conn.execute("SELECT pg_indexes_size('items')").fetchone()[0] / 2**20 - 0
            conn.execute("SET hnsw.ef_search = 80")
            latencies, hits = [], 0
            for q, expected in zip(queries, truth, strict=True):
                ms, rows = timed(
                    conn, f"SELECT id FROM items ORDER BY embedding <=> %s::{cast} LIMIT 10", (literal(q),)
                )
                latencies.append(ms)
                hits += len({row[0] for row in rows} & set(expected.tolist()))
            latencies.sort()
            print(
                f"{name:26} {table_mb:8.1f} {statistics.median(exact):9.1f} {build_s:8.1f} {index_mb:9.1f} "
                f"{statistics.median(latencies):9.2f} {latencies[int(len(latencies) * 0.95)]:9.2f} "
                f"{hits / (10 * len(queries)):7.3f}"
            )
        conn.execute("DROP TABLE IF EXISTS items")


if __name__ == "__main__":
    main()
