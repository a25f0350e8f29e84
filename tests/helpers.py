"""Helpers for tests that are not fixtures: subprocesses and generated images."""

import functools
import io
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from moderation.conf import DEFAULTS
from moderation.embedders import images

ROOT = Path(__file__).resolve().parent.parent


def run_python(
    code: str, *, args: list[str] | None = None, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter at the project root (settings load anew)."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-c", code, *(args or [])],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


DEMO_THRESHOLDS = {
    "CONSISTENCY_MIN": 0.5,
    "CATEGORY_MAX_RANK": 3,
    "DUPLICATE_MIN_SIMILARITY": 0.95,
    "PHASH_MAX_DISTANCE": 6,
}


def demo_moderation_settings(model_dir, **extra) -> dict:
    """MODERATION on the demo model, with thresholds on its scale."""
    return {
        "EMBEDDER": {
            "BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder",
            "OPTIONS": {"model_dir": str(model_dir), "threads": 1},
        },
        "THRESHOLDS": DEMO_THRESHOLDS,
        **extra,
    }


# images.decode_image with the app's default formats and pixel cap, and no byte cap (the
# reference tests decode large PNGs); a test may pass its own limits.
decode_image = functools.partial(
    images.decode_image,
    formats=DEFAULTS["IMAGE_FORMATS"],
    max_pixels=DEFAULTS["IMAGE_MAX_PIXELS"],
    max_bytes=None,
)


def image_bytes(color=(200, 30, 30), *, size=(64, 64), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def score_now(obj, *, force: bool = False) -> dict:
    """Run the scoring task for ``obj`` in this process (what a qcluster worker does), then reload it."""
    from moderation import tasks

    obj.refresh_from_db()
    result = tasks.moderate_object(obj._meta.label_lower, str(obj.pk), obj.moderation_version, force)
    obj.refresh_from_db()
    return result


def history(obj) -> list[tuple[str, str]]:
    """(from, to) of the object's decisions, oldest first."""
    from moderation import transitions

    return list(transitions.history(obj).order_by("created_at", "id").values_list("from_status", "to_status"))


def hnsw_index(model, field: str) -> str:
    """The name of ``model``'s HNSW index on ``field`` (``moderation.models.VectorIndexName``)."""
    return next(index.name for index in model._meta.indexes if index.fields == [field])


def index_plan(sql: str, params=(), *, k: int = 10) -> str:
    """EXPLAIN of ``sql`` with the search's index options for ``k``, scans and sorts priced
    out: on the tests' small tables the planner would rather scan and sort, and only an
    index that fits the query's shape (operator, cast, ORDER BY ... LIMIT) returns rows in order."""
    from django.db import connection, transaction

    from moderation import vectors

    with transaction.atomic():
        vectors.set_index_options(k=k)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute("EXPLAIN " + sql, params)
            return "\n".join(row[0] for row in cursor.fetchall())
