"""Compiled search statements, reused by searches that differ only in their query vector.

A similar-item search is one statement: the rows of a queryset, ordered by the cosine
distance of a column to a query vector, k of them. At 10k-100k listings, building that
queryset and compiling it to SQL cost about half as much as the index search itself
(docs/benchmarks.md, "Where a search request's time goes"), and they give the same SQL
for every search of the same queryset, column and k: only the query vector, one
parameter, changes ("more like this": the object's key). ``Statement`` keeps what
compiling produced (the SQL, the other parameters, and how its rows become model
instances, select_related included), and ``fetch`` keeps the statements of recent
searches, per thread.

The key of a statement is its *shape* pickled: the querysets it is built from (each as
its class, database, ``Query`` and prefetch lookups), the caller's filters and other
values, and what Django reads while compiling besides the query: the active time zone
(date lookups), the active language (lazy strings), ``USE_TZ``, and a generation that
``clear`` moves on (settings changed, migrations run). Pickle writes the whole object
graph (the model, joins, conditions and their values, select_related, deferred fields,
annotations, ordering, limits), so equal keys compile to the same SQL with the same
parameters. Equal shapes that pickle differently (attributes cached by an earlier
compile) only miss the cache.

A search is run as Django always runs it, compiled each time, when its shape cannot be
pickled (an expression holding a lambda); when its queryset's class changes how a
queryset is evaluated or filtered (an override of ``_fetch_all``, ``iterator``,
``_clone``, ``filter``...) or carries attributes of its own; when it does more than make
model instances (``values()``, a related manager's known objects, ``select_for_update``);
or when its compiled form does not prove the value is a plain parameter
(``Statement.compile``). A shape that failed once is remembered as such.
"""

from __future__ import annotations

import io
import itertools
import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.models.query import ModelIterable, get_related_populators, prefetch_related_objects
from django.utils import timezone, translation

from .conf import moderation_settings

# Keys kept per thread (a statement is kept under one or two keys: ``fetch``): a site
# searches a handful of querysets (its endpoints), times the filter values its users
# combine. A statement holds its SQL, its parameters (a 5 kB vector literal among them)
# and Django's compiler: about 34 kB (tracemalloc, the demo's search).
CACHE_SIZE = 128

# What a plain QuerySet instance holds (Django 5.x); a subclass's instance with more is
# not cached: its own attributes may change what it filters.
_QUERYSET_ATTRIBUTES = frozenset(models.QuerySet(model=None).__dict__)
# Methods whose override changes how a queryset is filtered or evaluated.
_EVALUATION = (
    "_fetch_all",
    "iterator",
    "__iter__",
    "_clone",
    "_chain",
    "filter",
    "exclude",
    "_filter_or_exclude",
    "_filter_or_exclude_inplace",
    "using",
    "defer",
    "annotate",
    "order_by",
)

_FAILED = object()  # a shape whose statement cannot be reused: compiled each time
_local = threading.local()
_generation = itertools.count()
_current_generation = next(_generation)


@dataclass(frozen=True)
class Statement:
    """A compiled SELECT of model instances whose parameters change from run to run only
    at ``slots``, which all take the same value (a query vector's literal, an object's key).

    ``compiler`` is Django's, after compiling: it knows which columns make the model's
    instance, the select_related ones and the annotations (``django.db.models.query.
    ModelIterable`` reads the same attributes; ``tests/test_statements.py`` compares the
    two).
    """

    sql: str
    params: tuple
    slots: tuple[int, ...]
    compiler: models.sql.compiler.SQLCompiler
    init_list: tuple[str, ...]
    model_fields: slice
    populators: list
    prefetch: tuple
    converters: dict  # column position: (converters, expression), Django's from_db_value conversions

    @classmethod
    def compile(cls, built: models.QuerySet, value, other: models.QuerySet, other_value) -> Statement | None:
        """``built``, a queryset made with ``value``, compiled; ``other`` is the same made with
        ``other_value``. The slots are where their parameters differ, and must hold exactly
        ``value`` and ``other_value`` (the ORM passed them on unchanged). None when the two
        differ otherwise, when the queryset is not a plain one of model instances (``plain``),
        or when it matches nothing by construction (``pk__in=[]``). Raises what compiling
        raises (an invalid lookup value: ``ValueError``, ``ValidationError``...)."""
        if not plain(built) or built.query.select_for_update:
            return None
        compiler = built.query.get_compiler(using=built.db)
        try:
            sql, params = compiler.as_sql()
            other_sql, other_params = other.query.get_compiler(using=other.db).as_sql()
        except EmptyResultSet:
            return None
        if sql != other_sql or len(params) != len(other_params) or compiler.has_extra_select:
            return None
        slots = tuple(
            position for position, (mine, theirs) in enumerate(zip(params, other_params, strict=True)) if mine != theirs
        )
        if not slots or any(params[slot] != value or other_params[slot] != other_value for slot in slots):
            return None
        select, klass_info = compiler.select, compiler.klass_info
        columns = [column[0] for column in select[: compiler.col_count]]
        if compiler.has_composite_fields(columns):
            return None
        fields = klass_info["select_fields"]
        model_fields = slice(fields[0], fields[-1] + 1)
        return cls(
            sql=sql,
            params=tuple(params),
            slots=slots,
            compiler=compiler,
            init_list=tuple(column[0].target.attname for column in select[model_fields]),
            model_fields=model_fields,
            populators=get_related_populators(klass_info, select, built.db),
            prefetch=tuple(built._prefetch_related_lookups),
            converters=compiler.get_converters(columns),
        )

    def run(self, value) -> list[models.Model]:
        """Run with ``value`` in the slots: the model instances, as the queryset would make
        them (select_related objects, annotations and prefetches set), in the order of the
        rows. Raises the database's errors."""
        params = list(self.params)
        for slot in self.slots:
            params[slot] = value
        compiler = self.compiler
        with connections[compiler.using].cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        model, db, annotations = compiler.klass_info["model"], compiler.using, compiler.annotation_col_map
        if self.converters:
            rows = compiler.apply_converters(rows, self.converters)
        objects = []
        for row in rows:
            obj = model.from_db(db, self.init_list, row[self.model_fields])
            for populator in self.populators:
                populator.populate(row, obj)
            for name, position in annotations.items():
                setattr(obj, name, row[position])
            objects.append(obj)
        if self.prefetch and objects:
            prefetch_related_objects(objects, *self.prefetch)
        return objects


def plain(queryset: models.QuerySet) -> bool:
    """Whether ``queryset`` is evaluated and filtered as Django's own QuerySet is (its class
    overrides none of ``_EVALUATION``, its instance holds nothing else) and makes model
    instances (not ``values()``, no related manager's known objects)."""
    cls = type(queryset)
    return (
        queryset._iterable_class is ModelIterable
        and not queryset._known_related_objects
        and not queryset._sticky_filter
        and queryset.__dict__.keys() <= _QUERYSET_ATTRIBUTES
        and all(getattr(cls, name) is getattr(models.QuerySet, name) for name in _EVALUATION)
    )


class _ShapePickler(pickle.Pickler):
    """Pickles a queryset anywhere in a shape (a filter's value included) as its class,
    database, ``Query`` and prefetch lookups: pickling a QuerySet itself would run it."""

    def reducer_override(self, obj):
        if isinstance(obj, models.QuerySet):
            return tuple, ((type(obj), obj.db, obj.query, obj._prefetch_related_lookups),)
        return NotImplemented


def key(shape: tuple) -> bytes | None:
    """``shape`` and what Django reads while compiling besides the query (the time zone,
    the language, ``USE_TZ``, the generation of ``clear``), pickled; None when the shape
    cannot be pickled."""
    context = (_current_generation, settings.USE_TZ, timezone.get_current_timezone_name(), translation.get_language())
    buffer = io.BytesIO()
    try:
        _ShapePickler(buffer, pickle.HIGHEST_PROTOCOL).dump((context, shape))
    except (pickle.PicklingError, TypeError, AttributeError):
        return None
    return buffer.getvalue()


def another(value):
    """A value of ``value``'s type that differs from it (an int, a str, a UUID: what keys and
    vector literals are), or None for another type."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return -value - 1
    if isinstance(value, str):
        return value + "~"
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=value.int ^ 1)
    return None


def fetch(shape: tuple, build: Callable[[object], models.QuerySet], value) -> list[models.Model]:
    """The model instances of ``build(value)``, a queryset that holds ``value`` as a
    parameter (once or more), compiled once per thread for each ``shape`` and run again
    with each new ``value`` (an int, a str or a UUID: ``another``); compiled every time
    with ``MODERATION["REUSE_STATEMENTS"]`` False.

    ``shape``: everything ``build`` depends on besides ``value`` (querysets, filters, a
    column, k), picklable. ``build`` is also called with ``another(value)``, only compiled,
    to find where ``value`` goes (``Statement.compile``); if that fails, the search runs
    as Django runs it. Raises what evaluating ``build(value)`` raises.
    """
    other = another(value) if moderation_settings.REUSE_STATEMENTS else None
    cache_key = None if other is None else key(shape)
    if cache_key is None:
        return list(build(value))
    cache = getattr(_local, "statements", None)
    if cache is None:
        cache = _local.statements = OrderedDict()
    statement = cache.get(cache_key)
    if statement is _FAILED:
        cache.move_to_end(cache_key)
        return list(build(value))
    if statement is not None:
        cache.move_to_end(cache_key)
        return statement.run(value)
    built = build(value)
    try:
        statement = Statement.compile(built, value, build(other), other)
    except Exception:
        statement = None
    # Compiling caches attributes on expressions the built queryset shares with the
    # querysets of ``shape`` (their conditions), which changes how they pickle: a caller
    # that searches the same queryset object again finds the statement by that key.
    for known in {cache_key, key(shape)} - {None}:
        cache[known] = _FAILED if statement is None else statement
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return list(built) if statement is None else statement.run(value)


def clear(**kwargs) -> None:
    """Forget every thread's statements: a new generation of keys (the old ones age out of
    each thread's cache). The app connects it to ``setting_changed`` and ``post_migrate``:
    a setting or a schema may change the SQL a shape compiles to."""
    global _current_generation
    _current_generation = next(_generation)
    _local.__dict__.pop("statements", None)
