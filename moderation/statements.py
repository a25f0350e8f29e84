"""Compiled search statements, reused by searches that differ only in their query vector.

A similar-item search is one statement: the rows of a queryset, ordered by the cosine
distance of a column to a query vector, k of them. At 10k-100k listings, building that
queryset and compiling it to SQL cost about half as much as the index search itself
(docs/benchmarks.md, "Where a search request's time goes"), and they give the same SQL
for every search of the same queryset, column and k: only the query vector, one
parameter, changes. ``Statement`` keeps what compiling produced (the SQL, the other
parameters, and how its rows become model instances, select_related included), and
``reusable`` keeps the statements of recent querysets, per thread.

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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import EmptyResultSet
from django.db import connections, models
from django.db.models.query import ModelIterable, get_related_populators, prefetch_related_objects

# Statements kept per thread: a site searches a handful of querysets (its endpoints),
# times the filter values its users combine.
CACHE_SIZE = 256

_local = threading.local()


@dataclass(frozen=True)
class Statement:
    """A compiled SELECT of model instances (``queryset``'s) whose parameters change from
    run to run only at ``slot``, the query vector's literal.

    ``compiler`` is Django's, after compiling: it knows which columns make the model's
    instance, the select_related ones and the annotations (``django.db.models.query.
    ModelIterable`` reads the same attributes).
    """

    sql: str
    params: tuple
    slot: int
    compiler: models.sql.compiler.SQLCompiler
    init_list: tuple[str, ...]
    model_fields: slice
    populators: list
    prefetch: tuple

    @classmethod
    def compile(cls, queryset: models.QuerySet, value: str) -> Statement | None:
        """``queryset`` compiled, ``value`` (a parameter it holds exactly once, by identity)
        as the slot; None when the queryset is not a plain one of model instances, matches
        nothing by construction (``pk__in=[]``), or holds ``value`` other than once."""
        if queryset._iterable_class is not ModelIterable or queryset._known_related_objects:
            return None
        compiler = queryset.query.get_compiler(using=queryset.db)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return None
        slots = [position for position, param in enumerate(params) if param is value]
        if len(slots) != 1 or compiler.has_extra_select:
            return None
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        model_fields = slice(fields[0], fields[-1] + 1)
        return cls(
            sql=sql,
            params=tuple(params),
            slot=slots[0],
            compiler=compiler,
            init_list=tuple(column[0].target.attname for column in select[model_fields]),
            model_fields=model_fields,
            populators=get_related_populators(klass_info, select, queryset.db),
            prefetch=tuple(queryset._prefetch_related_lookups),
        )

    def objects(self, value: str) -> list[models.Model]:
        """Run with ``value`` in the slot: the model instances, as the queryset would make
        them (select_related objects, annotations and prefetches set), in the order of the rows."""
        params = list(self.params)
        params[self.slot] = value
        compiler = self.compiler
        with connections[compiler.using].cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        model, db, annotations = compiler.klass_info["model"], compiler.using, compiler.annotation_col_map
        objects = []
        for row in compiler.results_iter([rows]):
            obj = model.from_db(db, self.init_list, row[self.model_fields])
            for populator in self.populators:
                populator.populate(row, obj)
            for name, position in annotations.items():
                setattr(obj, name, row[position])
            objects.append(obj)
        if self.prefetch and objects:
            prefetch_related_objects(objects, *self.prefetch)
        return objects


def key(queryset: models.QuerySet, *extra) -> bytes | None:
    """What identifies ``queryset``'s statement with ``extra`` (picklable values that shape
    it besides the queryset: a column, k): the pickled database alias, ``Query`` and
    prefetch lookups; None when the queryset cannot be pickled."""
    try:
        return pickle.dumps(
            (queryset.db, queryset.query, queryset._prefetch_related_lookups, extra), pickle.HIGHEST_PROTOCOL
        )
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def objects(
    queryset: models.QuerySet, build: Callable[[str], models.QuerySet], value: str, *extra
) -> list[models.Model]:
    """The model instances of ``build(value)``, a queryset made from ``queryset`` that holds
    ``value`` as one parameter, compiled once per thread for each ``key(queryset, *extra)``
    and run again with each new ``value``. ``extra`` must name everything besides
    ``queryset`` and ``value`` that ``build`` depends on."""
    cache_key = key(queryset, *extra)
    if cache_key is None:
        return list(build(value))
    cache = getattr(_local, "statements", None)
    if cache is None:
        cache = _local.statements = OrderedDict()
    statement = cache.get(cache_key)
    if statement is None:
        built = build(value)
        statement = Statement.compile(built, value)
        if statement is None:
            return list(built)
        # Compiling caches attributes on expressions the built queryset shares with
        # ``queryset`` (its conditions), which changes how ``queryset`` pickles: a caller
        # that searches the same queryset object again finds the statement by that key.
        for known in {cache_key, key(queryset, *extra)} - {None}:
            cache[known] = statement
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(cache_key)
    return statement.objects(value)


def clear() -> None:
    """Forget this thread's statements (after a schema change, in tests)."""
    _local.__dict__.pop("statements", None)
