"""The search benchmark's synthetic catalogue: clustered CLIP-like vectors, made in chunks,
the category of each row, and the exact nearest neighbours to measure recall against.

Photo vectors lie around ``CLUSTERS`` centres (real photos of a catalogue cluster by
kind); each listing's text vector lies close to its own photo's (a consistent listing);
queries are drawn around the same centres. All vectors are float32 of unit length, 512
dimensions (CLIP ViT-B/32). Every chunk is seeded by its first row, so that a run that
reuses a loaded database (``--reuse``) regenerates exactly the vectors in it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

CLUSTERS = 300
DIMENSIONS = 512
CHUNK_ROWS = 50_000  # 2 x 50,000 x 512 float32 = 200 MB per chunk in flight
SPREAD = 0.02  # per-dimension noise around a centre, and of a text around its photo

# Categories by row number: every tenth row is in TEN_PERCENT; one row in a thousand
# (never a tenth one) in TENTH_PERCENT; the rest in COMMON.
COMMON, TEN_PERCENT, TENTH_PERCENT = "common", "ten-percent", "tenth-percent"
CATEGORIES = (COMMON, TEN_PERCENT, TENTH_PERCENT)


@functools.cache
def centres() -> np.ndarray:
    """(CLUSTERS, 512) float32: the cluster centres of the data (and of
    bench.zero_cost.ClusterEmbedder's "cluster N" queries)."""
    return np.random.default_rng(0).standard_normal((CLUSTERS, DIMENSIONS)).astype(np.float32) / np.sqrt(DIMENSIONS)


def unit(points: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32)."""
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def around_centres(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 512) unit vectors, each near a random centre."""
    noise = rng.standard_normal((n, DIMENSIONS), dtype=np.float32)
    return unit(centres()[rng.integers(0, CLUSTERS, n)] + SPREAD * noise)


def chunks(rows: int, *, size: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, photo vectors, text vectors) of ``rows`` listings, ``size`` rows at a time;
    arrays (n, 512) float32, unit length."""
    for start in range(0, rows, size):
        rng = np.random.default_rng([1, start])
        images = around_centres(rng, min(size, rows - start))
        texts = unit(images + SPREAD * rng.standard_normal(images.shape, dtype=np.float32))
        yield start, images, texts


def vectors(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """All photo and text vectors, (rows, 512) float32 each (4 GB for both at 1M rows)."""
    images = np.empty((rows, DIMENSIONS), np.float32)
    texts = np.empty((rows, DIMENSIONS), np.float32)
    for start, image_chunk, text_chunk in chunks(rows):
        images[start : start + len(image_chunk)] = image_chunk
        texts[start : start + len(text_chunk)] = text_chunk
    return images, texts


def queries(n: int) -> np.ndarray:
    """(n, 512) float32 query vectors around the centres (not rows of the table)."""
    return around_centres(np.random.default_rng(2), n)


def categories(rows: np.ndarray) -> np.ndarray:
    """The category slug of each row number in ``rows`` (an int array)."""
    return np.where(rows % 10 == 0, TEN_PERCENT, np.where(rows % 1000 == 1, TENTH_PERCENT, COMMON))


def exact_neighbours(matrix: np.ndarray, queries: np.ndarray, *, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(len(queries), k) row numbers of the ``k`` rows of ``matrix`` with the highest cosine
    to each query (unit vectors: the dot product), best first, by exact search in float32.

    ``rows``: the row numbers allowed (a filter); all rows when None. One matrix product
    per chunk of 100,000 rows for all queries at once (about 1 s per kind at 1M rows)."""
    allowed = np.arange(len(matrix)) if rows is None else np.asarray(rows)
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.empty((len(queries), 0), np.int64)
    for start in range(0, len(allowed), 100_000):
        part = allowed[start : start + 100_000]
        scores = queries @ matrix[part].T  # (queries, chunk)
        scores = np.concatenate([best_scores, scores], axis=1)
        candidates = np.concatenate([best_rows, np.broadcast_to(part, (len(queries), len(part)))], axis=1)
        keep = np.argpartition(-scores, min(k, scores.shape[1]) - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_rows = np.take_along_axis(candidates, keep, axis=1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_rows, order, axis=1)
