"""The embedder's account: one row per day and model, latency percentiles from buckets, cost."""

from datetime import date, timedelta

import pytest

from catalog.models import Listing
from moderation import usage
from moderation.embedders.http import HttpEmbedder
from moderation.models import EmbedderUsage
from tests.helpers import score_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def priced_embedder():
    """A hosted embedder with prices; no call is made (the account reads its prices alone)."""
    return HttpEmbedder(
        base_url="http://127.0.0.1:9", dimensions=4, model_id="http:priced", cost_per_text=0.001, cost_per_image=0.01
    )


def test_calls_of_a_day_add_up_in_one_row_with_latency_percentiles_and_cost(priced_embedder):
    today = date(2026, 11, 30)
    for milliseconds in [15] * 90 + [400] * 9 + [3000]:
        usage.record(priced_embedder, texts=2, images=2, seconds=milliseconds / 1000, failed=False, today=today)
    usage.record(priced_embedder, texts=2, images=2, seconds=30, failed=True, today=today)
    row = EmbedderUsage.objects.get()
    assert (row.calls, row.failures, row.inputs) == (101, 1, 404)
    assert row.cost == pytest.approx(100 * (2 * 0.001 + 2 * 0.01))  # the failed call costs nothing
    account = usage.account(today=today)
    (line,) = account["days"]
    assert (line["p50_ms"], line["p95_ms"]) == (20.0, 500.0)
    assert account["monthly"] == pytest.approx(30 * 2.2)


def test_the_projection_is_the_mean_of_the_days_with_calls_times_thirty(priced_embedder):
    today = date(2026, 11, 30)
    usage.record(priced_embedder, texts=100, images=0, seconds=0.1, failed=False, today=today)
    usage.record(priced_embedder, texts=300, images=0, seconds=0.1, failed=False, today=today - timedelta(days=2))
    usage.record(priced_embedder, texts=999, images=0, seconds=0.1, failed=False, today=today - timedelta(days=9))
    account = usage.account(today=today)
    assert account["cost"] == pytest.approx(0.4)
    assert account["monthly"] == pytest.approx(0.2 * 30)


def test_a_scoring_task_adds_its_embedder_call_to_the_account(demo_moderation, listing_factory, photo):
    score_now(listing_factory(title="Red mug", image=photo("red", "cup")))
    row = EmbedderUsage.objects.get(model_id="demo:colour-words-v1")
    assert (row.calls, row.inputs, row.cost) == (1, 2, 0.0)
    assert sum(row.latency_buckets) == 1
    assert Listing.objects.get().moderation_status == "ok"
