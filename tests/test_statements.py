"""Compiled search statements: a search of the same queryset, column and k compiles its SQL
once and runs it again with each query vector; anything else that changes the statement
(a filter's value, k, the column, select_related, a prefetch) is another statement."""

import datetime as dt
import threading

import numpy as np
import pytest
from django.db import connection
from django.db.models import Prefetch
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import Category, Listing
from moderation import search, statements, vectors

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_statements():
    statements.clear()
    yield
    statements.clear()


@pytest.fixture
def compiles(monkeypatch):
    """How many SELECTs Django compiles (``SQLCompiler.as_sql``)."""
    calls = []
    original = SQLCompiler.as_sql

    def counted(self, *args, **kwargs):
        calls.append(self.query.model)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counted)
    return calls


def uncached(queryset, vector, *, k=10, column="image_vector"):
    """The rows Django's own evaluation of the search's queryset gives, with the same index options."""
    with vectors.index_options(k=k):
        rows = list(search.nearest_queryset(queryset, column, vector, k=k))
    return [
        (row.pk, row.moderation_distance)
        for row in vectors.nearest_first(rows, distance=lambda row: row.moderation_distance)
    ]


def test_a_search_compiles_once_and_runs_again_with_each_vector(many_listings, compiles):
    queryset = Listing.objects.filter(moderation_status="ok")
    first = search.nearest(queryset, "image_vector", many_listings[0], k=10)
    assert len(compiles) == 2  # with the vector, and with another value to find where it goes
    for vector in many_listings[1:6]:
        hits = search.nearest(queryset, "image_vector", vector, k=10)
        assert [hit.object.pk for hit in hits] == [pk for pk, _distance in uncached(queryset, vector)]
    assert len(compiles) == 2 + 5  # only the uncached() references compiled again
    assert first[0].object.title == "item 0"
    assert first[0].score == pytest.approx(1.0, abs=1e-3)


def test_a_filter_with_another_value_is_another_statement(many_listings):
    rare, common = Category.objects.get(name="Rare"), Category.objects.get(name="Common")
    for category in (rare, common, rare):
        hits = search.nearest(Listing.objects.filter(category=category), "image_vector", many_listings[3], k=20)
        assert {hit.object.category_id for hit in hits} == {category.pk}
        assert len(hits) == 20


@pytest.mark.parametrize("other", [{"k": 5}, {"column": "text_vector"}])
def test_k_and_the_column_are_part_of_the_statement(many_listings, other):
    queryset = Listing.objects.all()
    search.nearest(queryset, "image_vector", many_listings[2], k=10)
    column, k = other.get("column", "image_vector"), other.get("k", 10)
    hits = search.nearest(queryset, column, many_listings[2], k=k)
    assert [hit.object.pk for hit in hits] == [pk for pk, _ in uncached(queryset, many_listings[2], k=k, column=column)]


def test_reused_statements_make_instances_as_django_does(many_listings, django_assert_num_queries):
    queryset = Listing.objects.select_related("category", "seller").prefetch_related(
        Prefetch("category__listings", queryset=Listing.objects.only("pk", "category"), to_attr="siblings")
    )
    search.nearest(queryset, "image_vector", many_listings[1], k=5)  # compiled here
    with django_assert_num_queries(2):  # the search, then the prefetch; the relations are joined
        hits = search.nearest(queryset, "image_vector", many_listings[4], k=5)
        shown = [
            (hit.object.category.name, hit.object.seller.username, len(hit.object.category.siblings)) for hit in hits
        ]
    expected = {
        obj.pk: obj for obj in Listing.objects.select_related("category").in_bulk([h.object.pk for h in hits]).values()
    }
    for hit, (category, _seller, siblings) in zip(hits, shown, strict=True):
        assert category == expected[hit.object.pk].category.name
        assert siblings == Listing.objects.filter(category__name=category).count()
        assert {"image_vector", "text_vector"} <= hit.object.get_deferred_fields()
        assert hit.object._state.db == "default"
        assert not hit.object._state.adding


def test_a_search_that_matches_nothing_by_construction_sends_nothing(many_listings):
    with CaptureQueriesContext(connection) as captured:
        assert search.nearest(Listing.objects.filter(pk__in=[]), "image_vector", many_listings[0], k=10) == []
        assert search.nearest(Listing.objects.filter(pk__in=[]), "image_vector", many_listings[1], k=10) == []
    assert captured.captured_queries == []


def test_a_queryset_that_cannot_be_pickled_is_compiled_each_time(many_listings, compiles):
    queryset = Listing.objects.all()
    queryset.query.unpicklable = lambda: None  # as an expression holding a lambda would be
    for vector in many_listings[:3]:
        assert len(search.nearest(queryset, "image_vector", vector, k=3)) == 3
    assert len(compiles) == 3


def test_each_thread_keeps_its_own(many_listings):
    """A statement holds Django's compiler, made on one thread's connection: threads
    (gunicorn's gthread workers) do not share them."""
    search.nearest(Listing.objects.all(), "image_vector", many_listings[0], k=3)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(getattr(statements._local, "statements", None)))
    thread.start()
    thread.join()
    assert len(statements._local.statements) == 1
    assert seen == [None]


def test_the_cache_is_bounded(many_listings, monkeypatch):
    monkeypatch.setattr(statements, "CACHE_SIZE", 3)
    for price in range(6):
        search.nearest(Listing.objects.filter(price__gte=price), "image_vector", many_listings[0], k=3)
    assert len(statements._local.statements) == 3


def test_more_like_this_compiles_once_for_every_object(many_listings, compiles, django_assert_num_queries):
    source = Listing.objects.select_related("category")
    listings = list(Listing.objects.defer("image_vector", "text_vector").order_by("pk")[:4])
    search.similar_to(listings[0], k=5, source=source)
    compiled = len(compiles)
    for listing in listings[1:]:
        with django_assert_num_queries(2):  # one index search per vector, the categories joined
            hits = search.similar_to(listing, k=5, source=source)
            names = [hit.object.category.name for hit in hits]
        assert len(names) == 5
        assert listing.pk not in {hit.object.pk for hit in hits}
        best = hits[0]  # the same vectors on both sides here: its nearest photo is its nearest text
        expected = int(np.argsort(-(many_listings @ many_listings[int(listing.title.split()[1])]))[1])
        assert best.object.title == f"item {expected}"
    assert len(compiles) == compiled


def test_the_active_time_zone_is_part_of_the_statement(many_listings):
    """A date lookup is compiled in the active time zone (per user, with Django's
    TimezoneMiddleware): a statement compiled under UTC must not serve Tokyo."""
    pks = list(Listing.objects.order_by("pk").values_list("pk", flat=True))
    Listing.objects.update(created_at=dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC))
    Listing.objects.filter(pk__in=pks[::2]).update(created_at=dt.datetime(2026, 1, 1, 23, 30, tzinfo=dt.UTC))
    filters = {"created_at__date": dt.date(2026, 1, 1)}  # every other listing is on Jan 2 in Tokyo
    for zone in ("UTC", "Asia/Tokyo", "UTC"):
        with timezone.override(zone):
            hits = search._nearest_in(Listing, "image_vector", many_listings[0], k=10, filters=filters, statuses=None)
            expected = uncached(search._queryset(Listing, filters=filters, statuses=None), many_listings[0])
            assert [hit.object.pk for hit in hits] == [pk for pk, _ in expected]
            assert all(timezone.localtime(hit.object.created_at).day == 1 for hit in hits)


def test_a_queryset_in_the_filters_is_not_run_to_make_the_key(many_listings):
    search.nearest(Listing.objects.all(), "image_vector", many_listings[0], k=3)  # the embedder, warm
    for vector in many_listings[:2]:
        rare = Category.objects.filter(name="Rare")
        with CaptureQueriesContext(connection) as captured:
            hits = search._nearest_in(
                Listing, "image_vector", vector, k=5, filters={"category__in": rare}, statuses=None
            )
        assert len(captured.captured_queries) == 1  # the search; the categories are its subquery
        assert rare._result_cache is None
        assert {hit.object.category.name for hit in hits} == {"Rare"}


def test_more_like_this_takes_the_key_as_a_string(many_listings):
    """As a URL gives it: converted as the ORM would, whether or not a statement exists."""
    first, other = Listing.objects.defer("image_vector", "text_vector").order_by("pk")[:2]
    expected = [hit.object.pk for hit in search.similar_to(first, k=5)]
    statements.clear()
    first.pk = str(first.pk)
    assert [hit.object.pk for hit in search.similar_to(first, k=5)] == expected
    other.pk = str(other.pk)
    assert len(search.similar_to(other, k=5)) == 5


class FilteringQuerySet(type(Listing.objects.all())):
    """A host's queryset that filters by state of its own when evaluated (a tenant, say)."""

    def _fetch_all(self):
        super()._fetch_all()
        self._result_cache = [obj for obj in self._result_cache if obj.price % 2 == 0]


def test_a_queryset_class_that_evaluates_differently_is_run_as_django_runs_it(many_listings, compiles):
    queryset = FilteringQuerySet(Listing)
    for vector in many_listings[:3]:
        hits = search.nearest(queryset, "image_vector", vector, k=10)
        assert hits
        assert all(hit.object.price % 2 == 0 for hit in hits)
    assert len(compiles) == 3  # compiled each time, never reused


def test_a_shape_that_cannot_be_reused_is_compiled_once_a_search(many_listings, compiles):
    """A search that matches nothing by construction cannot be reused: remembered, so later
    searches compile as Django does, not twice."""
    listing = Listing.objects.defer("image_vector", "text_vector").order_by("pk").first()
    search.similar_to(listing, k=3, source=Listing.objects.filter(pk__in=[]))
    compiled = len(compiles)
    for column in ("image_vector", "text_vector"):  # what Django's own evaluation compiles
        source = Listing.objects.filter(pk__in=[])
        list(search._similar_queryset(source, listing.pk, column, k=3, filters=None, statuses=search.PUBLIC_STATUSES))
    django = len(compiles) - compiled
    search.similar_to(listing, k=3, source=Listing.objects.filter(pk__in=[]))
    assert len(compiles) == compiled + 2 * django


def test_a_setting_change_makes_new_statements(many_listings, settings, compiles):
    search.by_text(Listing, "red", k=3)
    compiled = len(compiles)
    settings.MODERATION = {**settings.MODERATION, "SEARCH_EF": 200}
    search.by_text(Listing, "red", k=3)
    assert len(compiles) == compiled + 2


def test_reuse_can_be_turned_off(many_listings, settings, compiles):
    settings.MODERATION = {**settings.MODERATION, "REUSE_STATEMENTS": False}
    for vector in many_listings[:3]:
        assert len(search.nearest(Listing.objects.all(), "image_vector", vector, k=3)) == 3
    assert len(compiles) == 3
    assert getattr(statements._local, "statements", None) is None
