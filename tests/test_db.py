"""The write path's database helpers: one UPDATE for many rows, vectors as exact literals."""

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pgvector import HalfVector

from catalog.models import Listing
from moderation.db import update_rows
from moderation.vectors import stored_literal, to_db

pytestmark = pytest.mark.django_db


def stored_text(param: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::halfvec(512)::text", [param])
        return cursor.fetchone()[0]


def test_a_vector_written_as_a_stored_literal_is_stored_as_pgvectors_own_conversion_stores_it():
    """Unit vectors (values about 0.04, where halfvec's steps are coarser than to_db's five
    decimals), values at rounding boundaries and values near halfvec's smallest."""
    rng = np.random.default_rng(14)
    vectors = [rng.standard_normal(512) for _ in range(30)]
    vectors = [vector / np.linalg.norm(vector) for vector in vectors]
    vectors.append(np.linspace(-1, 1, 512))
    vectors.append(rng.uniform(-1e-4, 1e-4, 512))
    vectors.append(np.full(512, 0.0442135) + np.arange(512) * 1e-7)
    for vector in vectors:
        values = to_db(vector)
        assert stored_text(stored_literal(values)) == stored_text(HalfVector._to_db(values))
    assert stored_literal(None) is None


def test_update_rows_writes_the_vectors_and_fields_of_many_rows_in_one_statement(listing_factory):
    listings = [listing_factory(title=f"Red mug {i}") for i in range(3)]
    rng = np.random.default_rng(3)
    for listing in listings:
        listing.image_vector = to_db(rng.standard_normal(512) / 22.6)
        listing.severity = listing.pk % 7
    with CaptureQueriesContext(connection) as queries:
        update_rows(Listing, listings, ["image_vector", "severity"])
    assert len(queries) == 1
    for listing in listings:
        stored = Listing.objects.get(pk=listing.pk)
        assert stored.severity == listing.pk % 7
        assert stored_text(stored_literal(listing.image_vector)) == stored_text(
            "[" + ",".join(str(float(x)) for x in stored.image_vector) + "]"
        )
        assert stored.text_vector is None
