"""Health endpoints: the web process, and what the task cluster has waiting."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Listing
from moderation.models import ModerationStatus
from tests.helpers import score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


def test_the_web_health_endpoint_answers_ok_when_the_database_answers(client):
    response = client.get("/health/")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_the_cluster_health_reports_queue_depth_oldest_pending_age_and_errors_by_code(
    client, demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    broken = listing_factory(stored_image=b"<html>not a photo</html>")
    score_now(broken)
    with django_capture_on_commit_callbacks(execute=True):
        waiting = listing_factory(image=photo("red"))
        listing_factory(image=photo("blue"))
    Listing.objects.filter(pk=waiting.pk).update(moderation_queued_at=timezone.now() - timedelta(minutes=7))
    report = client.get("/health/cluster/").json()
    assert report["queue_depth"] == 2
    assert 7 * 60 <= report["oldest_pending_seconds"] < 8 * 60
    assert report["errors"] == {broken.moderation_error: 1}


def test_the_cluster_health_of_an_idle_site_has_nothing_waiting(client, demo_moderation):
    report = client.get("/health/cluster/").json()
    assert report == {"status": "ok", "queue_depth": 0, "oldest_pending_seconds": None, "errors": {}}
