"""Health endpoints: the web process, and what the task cluster has waiting."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.conf import Conf

from catalog.models import Listing
from moderation import health, tasks
from moderation.models import Heartbeat, ModerationStatus
from tests.helpers import score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


def test_the_web_health_endpoint_answers_ok_when_the_database_answers(client):
    response = client.get("/health/")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_the_cluster_health_reports_queue_depth_oldest_pending_age_and_errors_by_code(
    client, demo_moderation, settings, listing_factory, photo, django_capture_on_commit_callbacks
):
    settings.MODERATION = {**demo_moderation, "DRAIN_SAVES": False}  # a task per save: two wait
    health.beat()
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
    assert report == {
        "status": "ok",
        "queue_depth": 0,
        "oldest_pending_seconds": None,
        "errors": {},
        "heartbeat_seconds": None,
        "wedged": False,
        "broker_reachable": True,
    }


def test_an_unreachable_broker_is_a_json_503_and_moderation_health_says_so(client, demo_moderation, monkeypatch):
    """Found by a tester: with Redis down both answered a traceback."""
    monkeypatch.setattr(Conf, "ORM", None)  # django-q2's Redis broker, at a port nobody listens on
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:1/0")
    response = client.get("/health/cluster/")
    assert response.status_code == 503
    assert (response.json()["status"], response.json()["queue_depth"]) == ("broker_unreachable", None)
    with pytest.raises(CommandError, match="The task broker does not answer"):
        call_command("moderation_health")


def sweep_ran_ago(seconds: float) -> None:
    Heartbeat.objects.filter(name=health.SWEEP_HEARTBEAT).update(beat_at=timezone.now() - timedelta(seconds=seconds))


def test_the_cluster_health_answers_503_wedged_when_work_waits_and_the_sweep_ran_too_long_ago(
    client, demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    tasks.sweep()
    with django_capture_on_commit_callbacks(execute=True):
        listing_factory(image=photo("red"))
    sweep_ran_ago(301)  # HEARTBEAT_MAX_AGE_SECONDS: 300
    response = client.get("/health/cluster/")
    assert response.status_code == 503
    assert (response.json()["status"], response.json()["wedged"]) == ("wedged", True)
    assert 301 <= response.json()["heartbeat_seconds"] < 310


def test_a_sweep_that_ran_within_the_heartbeat_max_age_keeps_the_cluster_healthy_while_work_waits(
    client, demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        listing_factory(image=photo("red"))
    assert client.get("/health/cluster/").status_code == 503  # work waits and no sweep ever ran
    tasks.sweep()
    sweep_ran_ago(299)
    response = client.get("/health/cluster/")
    assert (response.status_code, response.json()["wedged"]) == (200, False)


def test_a_stale_heartbeat_with_nothing_waiting_is_an_idle_cluster_not_a_wedged_one(client, demo_moderation):
    tasks.sweep()
    sweep_ran_ago(3600)
    assert client.get("/health/cluster/").status_code == 200
    call_command("moderation_health")


def test_moderation_health_fails_naming_the_sweeps_age_when_the_cluster_is_wedged(
    demo_moderation, listing_factory, photo, capsys
):
    tasks.sweep()
    listing_factory(image=photo("red"))
    sweep_ran_ago(600)
    with pytest.raises(CommandError, match=r"the sweep last ran 60\d s ago while 0 task\(s\) wait"):
        call_command("moderation_health")
    assert '"wedged": true' in capsys.readouterr().out
