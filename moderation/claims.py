"""Which task scores which object (claims: session advisory locks), and which task
writes a picture first (picture locks: transaction advisory locks).

A task claims the objects it was queued for and, when ``COALESCE`` is on, up to
``BATCH_SIZE`` in all with other ``pending`` objects still waiting for their own
tasks: under load, one embedder call scores many saved listings, and their own tasks
find them claimed or already scored and end at once.

A claim is a lock on (the table, a hash of the key), not a write: writing a claim on
the row would re-insert a scored row into both HNSW indexes. It is held by the
worker's database session from before the embedder call until the results are
committed, and released when the task ends, or by PostgreSQL when the worker dies
and its connection closes. Locks taken by a session live outside transactions, so
this needs one server session per Django connection: direct connections or
PgBouncer in session mode. Behind transaction pooling set ``COALESCE`` to False:
tasks then take no locks (a task and its re-delivery may both score an object, and
the result is written once).

Two keys that hash alike (32 bits) only make a task skip an object that another
holds; the sweeper re-queues it after ``STALE_AFTER_SECONDS``.

Picture locks order two tasks scoring the same picture at the same moment: the second
waits until the first has committed, then finds its photo among the duplicate
candidates (``lock_pictures``).
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager

from django.db import DatabaseError, connection

from .models import ModerationStatus
from .registry import ModerationSpec

logger = logging.getLogger("moderation")
_KEY = "%s::regclass::oid::int, hashtext(k.pk)"


def _table(spec: ModerationSpec) -> str:
    return connection.ops.quote_name(spec.model._meta.db_table)


@contextmanager
def claim(spec: ModerationSpec, pks: list[str], *, extra: int):
    """Claim ``pks`` (the task's own objects) and up to ``extra`` other pending ones.

    Yields (own, others, left): the keys, as strings, this task holds, and how many
    other objects it saw waiting for a task and left. An own key missing from ``own`` is held by
    another task. Other tasks are claiming waiting objects at the same moment, so three
    times ``extra`` are tried and the surplus is released at once: taking only
    ``extra`` candidates left two workers fighting over the same ones, and the save
    path at half its rate (docs/benchmarks.md). ``left`` counts the surplus released,
    or is ``extra`` when all ``3 * extra`` candidates were tried and fewer than
    ``extra`` could be claimed (more may wait beyond them): the caller then queues
    drains (``moderation.drains``), since a released object may have no task of its own.
    """
    others_sql, others_params = "", []
    if extra > 0:
        waiting = (
            spec.model._default_manager.filter(
                moderation_status=ModerationStatus.PENDING, moderation_retry_at__isnull=True
            )
            .exclude(pk__in=pks)
            .order_by()  # any waiting ones: sorting every pending row would cost more
            .values_list("pk")[: 3 * extra]  # some may be held by other tasks
        )
        sql, params = waiting.query.sql_with_params()
        others_sql, others_params = f" UNION ALL SELECT w.pk::text, false FROM ({sql}) AS w(pk)", list(params)
    with connection.cursor() as cursor:
        # The lock is taken on the rows the subquery returns, not on rows a LIMIT
        # would discard: a volatile function is not pushed into it.
        cursor.execute(
            f"SELECT k.pk, k.own, pg_try_advisory_lock({_KEY}) "
            f"FROM (SELECT unnest(%s::text[]), true{others_sql}) AS k(pk, own)",
            [_table(spec), list(pks), *others_params],
        )
        rows = cursor.fetchall()
    own = [pk for pk, is_own, held in rows if is_own and held]
    others = [pk for pk, is_own, held in rows if not is_own and held]
    tried = sum(1 for _pk, is_own, _held in rows if not is_own)
    # Claimed beyond the room left: released below, and they may have no task of their own.
    surplus = max(0, len(others) - extra)
    # Every candidate tried and too few claimed: other tasks hold them, and more may wait
    # beyond the ones tried.
    crowded = extra > 0 and tried == 3 * extra and len(others) < extra
    if surplus:
        left = surplus
    elif crowded:
        left = extra
    else:
        left = 0
    release(spec, others[extra:])
    others = others[:extra]
    try:
        yield own, others, left
    finally:
        release(spec, own + others)


def release(spec: ModerationSpec, pks: list[str]) -> None:
    if not pks or connection.connection is None:
        return  # nothing held, or the session (and its locks) is gone
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT pg_advisory_unlock({_KEY}) FROM unnest(%s::text[]) AS k(pk)", [_table(spec), list(pks)]
            )
    except DatabaseError:  # a broken session: its locks went with it
        logger.warning("could not release the claims of %d object(s) of %s", len(pks), spec.label, exc_info=True)


# Copies of one picture (re-encoded, resized) hash within a few bits of each other. The
# locks cover copies within this many bits: with more, a hash is cut into so many short
# bands that unrelated batches share keys and two workers' writes take turns (measured:
# bands for 6 bits halved the pipeline's rate; docs/benchmarks.md). A concurrent pair of
# copies further apart than this may still both be scored as originals.
LOCKED_DISTANCE = 2


def picture_keys(spec: ModerationSpec, phash: int) -> set[int]:
    """Lock keys that two hashes of the same picture share.

    The 64-bit hash is cut into ``LOCKED_DISTANCE`` + 1 bands: two hashes that differ
    in at most that many bits agree on one band at least (pigeonhole), so they share
    that band's key.
    """
    bands = LOCKED_DISTANCE + 1
    bits = phash & ((1 << 64) - 1)
    keys, start = set(), 0
    for band in range(bands):
        width = 64 // bands + (band < 64 % bands)
        value = (bits >> start) & ((1 << width) - 1)
        start += width
        digest = hashlib.blake2b(f"{spec.label}:{band}:{value}".encode(), digest_size=8).digest()
        keys.add(int.from_bytes(digest, "big", signed=True))
    return keys


def lock_pictures(spec: ModerationSpec, phashes: list) -> None:
    """Inside the transaction that checks duplicates and writes the scores: wait for any
    other task scoring the same picture to commit (transaction advisory locks, single
    bigint keys, a key space apart from the two-integer keys of ``claim``). Taken in
    sorted order, so two tasks cannot deadlock on them."""
    keys = sorted(set().union(*(picture_keys(spec, phash) for phash in phashes if phash is not None)))
    if keys:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", [keys])
