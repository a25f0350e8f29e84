"""Similar-item search on pgvector: the HNSW index is used, filters still return k,
vectors of another model are never compared, results fuse by rank."""

import numpy as np
import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from catalog.models import Category, Listing
from moderation import search
from moderation.models import ModerationStatus
from moderation.search import Hit
from tests.helpers import hnsw_index, index_plan, score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


def test_the_hnsw_index_serves_the_nearest_neighbour_query(many_listings):
    """The query's shape (operator, cast, ORDER BY ... LIMIT) must fit the index; a cast to
    vector instead of halfvec, or another operator, would silently scan the table. On a
    table this small the planner prefers a scan and a sort, so both are priced out here; the
    search benchmark shows the plan at 100k rows."""
    queryset = Listing.objects.filter(
        embedding_model="demo:colour-words-v1", moderation_status__in=search.PUBLIC_STATUSES
    )
    sql, params = search.nearest_queryset(queryset, "image_vector", many_listings[0], k=10).query.sql_with_params()
    plan = index_plan(sql, params)
    assert f"Index Scan using {hnsw_index(Listing, 'image_vector')}" in plan, plan


def test_a_filtered_search_still_returns_k_results(many_listings):
    rare = Category.objects.get(name="Rare")
    hits = search.nearest(Listing.objects.filter(category=rare), "image_vector", many_listings[5], k=40)
    assert len(hits) == 40
    assert {hit.object.category_id for hit in hits} == {rare.pk}
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)


def test_hnsw_results_match_exact_search(many_listings):
    query = many_listings[7] + 0.3 * many_listings[8]
    query /= np.linalg.norm(query)
    hits = search.nearest(Listing.objects.all(), "image_vector", query, k=10)
    exact = np.argsort(-(many_listings @ query))[:10]
    assert len({int(hit.object.title.split()[1]) for hit in hits} & set(exact.tolist())) >= 9


def test_vectors_of_another_model_are_never_compared(demo_moderation, listing_factory, photo):
    from tests.helpers import score_now

    mine = listing_factory(title="Red mug", image=photo("red", "cup"))
    score_now(mine)
    Listing.objects.filter(pk=mine.pk).update(embedding_model="some:other-model")
    assert search.by_text(Listing, "red") == []


def test_fusion_ranks_what_both_lists_agree_on_first():
    a, b, c = (type("Obj", (), {"pk": n})() for n in range(3))
    fused = search.fuse({"text": [Hit(a, 0.3), Hit(b, 0.2)], "image": [Hit(b, 0.9), Hit(c, 0.8)]}, weights={}, k=3)
    assert [hit.object.pk for hit in fused] == [1, 0, 2]
    assert fused[0].ranks == {"text": 2, "image": 1}


def test_k_is_capped(many_listings):
    assert len(search.nearest(Listing.objects.all(), "image_vector", many_listings[0], k=10_000)) == search.MAX_K


def test_similar_items_take_two_queries_whatever_the_source(many_listings, django_assert_num_queries):
    listing = Listing.objects.defer("image_vector", "text_vector").get(title="item 3")
    source = Listing.objects.select_related("category", "seller")
    # Both searches in one statement, sent with the index settings, then the hits with their relations.
    with django_assert_num_queries(2):
        hits = search.similar_to(listing, k=5, source=source)
        [(hit.object.category.name, hit.object.seller.username) for hit in hits]
    assert len(hits) == 5
    assert listing.pk not in {hit.object.pk for hit in hits}
    # Text and photo vectors are the same here: both lists agree, nearest first.
    vectors = many_listings / np.linalg.norm(many_listings, axis=1, keepdims=True)
    similarities = vectors @ vectors[3]
    similarities[3] = -2
    exact = [f"item {i}" for i in np.argsort(-similarities)[:5]]
    assert [hit.object.title for hit in hits] == exact
    assert all(hit.ranks == {"image": rank, "text": rank} for rank, hit in enumerate(hits, start=1))


def test_both_searches_of_similar_items_use_their_hnsw_index(many_listings):
    listing = Listing.objects.get(title="item 3")
    with CaptureQueriesContext(connection) as queries:
        search.similar_to(listing, k=5)
    searches = [query["sql"].split(";", 1)[1] for query in queries.captured_queries if "<=>" in query["sql"]]
    assert len(searches) == 2  # each sent after the index options, in one message
    plan = "\n".join(index_plan(statement, [], k=5) for statement in searches)
    assert f"Index Scan using {hnsw_index(Listing, 'image_vector')}" in plan, plan
    assert f"Index Scan using {hnsw_index(Listing, 'text_vector')}" in plan, plan


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_search_reads_from_the_search_database_and_writes_nothing_there(
    demo_moderation, listing_factory, photo, settings
):
    """The replica alias is a second connection to the test database (TEST MIRROR)."""
    red = listing_factory(title="Red ceramic mug", image=photo("red", "cup"))
    score_now(red)
    # The same searches on the default database first: their compiled statements must not
    # be reused once the search database changes (moderation.statements).
    search.by_text(Listing, "red mug"), search.similar_to(red, statuses=None)
    settings.MODERATION = {**settings.MODERATION, "SEARCH_DATABASE": "replica"}
    with CaptureQueriesContext(connections["replica"]) as replica, CaptureQueriesContext(connection) as primary:
        hits = [search.by_text(Listing, "red mug"), search.similar_to(red, statuses=None)]
    assert [hit.object.pk for hit in hits[0]] == [red.pk]
    assert hits[1] == []  # nothing else to be similar to
    assert replica.captured_queries
    statements = {q["sql"].lstrip("(").split(None, 1)[0].upper() for q in replica.captured_queries}
    assert statements == {"SELECT"}  # the index options go with the query: no transaction to open
    assert not [q["sql"] for q in primary.captured_queries if "catalog_listing" in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_a_search_is_one_round_trip_and_its_index_options_end_with_it(many_listings):
    """The options travel in the query's own message (one implicit transaction): no BEGIN,
    no COMMIT, and the next query on the connection runs with the server's defaults."""
    with CaptureQueriesContext(connection) as queries:
        hits = search.nearest(Listing.objects.all(), "image_vector", many_listings[0], k=10)
    assert len(hits) == 10
    assert len(queries.captured_queries) == 1
    assert queries.captured_queries[0]["sql"].startswith("SELECT set_config('hnsw.ef_search', '160', true)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')")
        assert cursor.fetchone() == ("40", "off")  # pgvector's defaults


def test_inside_a_callers_transaction_the_index_options_last_until_its_end(many_listings):
    """As SET LOCAL always did: the caller's transaction is the query's."""
    with transaction.atomic():
        search.nearest(Listing.objects.all(), "image_vector", many_listings[0], k=50)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('hnsw.ef_search')")
            assert cursor.fetchone() == ("200",)


def test_with_server_side_binding_the_index_options_are_set_in_a_transaction(many_listings, monkeypatch):
    """Server-side binding cannot send two statements in one message: BEGIN, the options,
    the query, COMMIT, and a filtered search still returns k."""
    monkeypatch.setitem(
        connection.settings_dict, "OPTIONS", {**connection.settings_dict["OPTIONS"], "server_side_binding": True}
    )
    rare = Category.objects.get(name="Rare")
    with CaptureQueriesContext(connection) as queries:
        hits = search.nearest(Listing.objects.filter(category=rare), "image_vector", many_listings[5], k=40)
    assert len(hits) == 40
    assert queries.captured_queries[0]["sql"].startswith("SELECT set_config('hnsw.ef_search', '160', true)")
    assert ";" not in queries.captured_queries[1]["sql"]


def test_results_at_the_same_distance_come_in_the_order_of_their_keys_whatever_k(many_listings):
    """The same photo uploaded several times: the order of the copies must not change
    with k (a user trial saw the top result change between k=5 and k=10)."""
    copies = list(Listing.objects.order_by("-pk").values_list("pk", flat=True)[:3])
    Listing.objects.filter(pk__in=copies).update(image_vector=many_listings[0])
    tied = sorted([*copies, Listing.objects.get(title="item 0").pk])
    for k in (4, 10, 20):
        hits = search.nearest(Listing.objects.all(), "image_vector", many_listings[0], k=k)
        assert [hit.object.pk for hit in hits[:4]] == tied
