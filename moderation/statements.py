"""Compiled search statements, reused by searches that differ only in their query vector.

A similar-item search is one statement: the rows of a queryset, ordered by the cosine
distance of a column to a query vector, k of them. At 10k-100k listings, building that
queryset and compiling it to SQL cost about half as much as the index search itself
(docs/benchmarks.md, "Where a search request's time goes"), and they give the same SQL
for every search of the same queryset, column and k: only the query vector, one
parameter, changes ("more like this": the object's key). ``Statement`` keeps what
compiling produced (the SQL, the other parameters, and how its rows become model
instances, select_related included), and ``objects`` keeps the statements of recent
searches, per thread.

The key of a statement is the pickled queryset (its ``Query``): pickle writes the whole
object graph (the model, joins, conditions and their values, select_related, deferred
fields, annotations, ordering, limits), so two querysets that pickle to the same bytes
compile to the same SQL with the same parameters. Equal querysets that pickle
differently (a set iterated in another order, attributes cached by an earlier compile)
only miss the cache. A queryset that
cannot be pickled (an expression holding a lambda), or whose evaluation does more than
make model instances (``values()``, a related manager's known objects), is compiled and
run as Django always does.
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.models.query import ModelIterable, get_related_populators, prefetch_related_objects

# Statements kept per thread: a site searches a handful of querysets (its endpoints),
# times the filter values its users combine. One holds its SQL, its parameters (a 5 kB
# vector literal among them) and Django's compiler: tens of kB.
CACHE_SIZE = 128

_local = threading.local()


@dataclass(frozen=True)
class Statement:
    """A compiled SELECT of model instances whose parameters change from run to run only
    at ``slots``, which all take the same value (a query vector's literal, an object's key).

    ``compiler`` is Django's, after compiling: it knows which columns make the model's
    instance, the select_related ones and the annotations (``django.db.models.query.
    ModelIterable`` reads the same attributes).
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
        differ otherwise, when the queryset is not a plain one of model instances, or when it
        matches nothing by construction (``pk__in=[]``)."""
        if built._iterable_class is not ModelIterable or built._known_related_objects:
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

    def objects(self, value) -> list[models.Model]:
        """Run with ``value`` in the slots: the model instances, as the queryset would make
        them (select_related objects, annotations and prefetches set), in the order of the rows."""
        params = list(self.params)
        for slot in self.slots:
            params[slot] = value
        compiler = self.compiler
        with connections[compiler.using].cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        model, db, annotations = compiler.klass_info["model"], compiler.using, compiler.annotation_col_map
        objects = []
        if self.converters:
            rows = compiler.apply_converters(rows, self.converters)
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


def key(shape: tuple) -> bytes | None:
    """``shape`` pickled, each queryset in it as its database alias, ``Query`` and prefetch
    lookups (pickling a QuerySet itself would run it); None when it cannot be pickled."""
    parts = [
        ("queryset", part.db, part.query, part._prefetch_related_lookups) if isinstance(part, models.QuerySet) else part
        for part in shape
    ]
    try:
        return pickle.dumps(parts, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


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


def objects(shape: tuple, build: Callable[[object], models.QuerySet], value) -> list[models.Model]:
    """The model instances of ``build(value)``, a queryset that holds ``value`` as a
    parameter (once or more), compiled once per thread for each ``shape`` and run again
    with each new ``value`` (an int, a str or a UUID: ``another``).

    ``shape``: everything ``build`` depends on besides ``value`` (querysets, filters, a
    column, k), picklable. ``build`` is also called with ``another(value)``, only compiled,
    to find where ``value`` goes (``Statement.compile``).
    """
    other = another(value)
    cache_key = None if other is None else key(shape)
    if cache_key is None:
        return list(build(value))
    cache = getattr(_local, "statements", None)
    if cache is None:
        cache = _local.statements = OrderedDict()
    statement = cache.get(cache_key)
    if statement is None:
        built = build(value)
        statement = Statement.compile(built, value, build(other), other)
        if statement is None:
            return list(built)
        # Compiling caches attributes on expressions the built queryset shares with the
        # querysets of ``shape`` (their conditions), which changes how they pickle: a
        # caller that searches the same queryset object again finds the statement by that key.
        for known in {cache_key, key(shape)} - {None}:
            cache[known] = statement
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(cache_key)
    return statement.objects(value)


def clear() -> None:
    """Forget this thread's statements (after a schema change, in tests)."""
    _local.__dict__.pop("statements", None)
