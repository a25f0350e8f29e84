"""End to end through a real `manage.py qcluster` process, on the ORM broker and on Redis."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
from django.db import connection
from django_q.models import OrmQ
from django_q.tasks import async_task

from catalog.models import Listing
from moderation import queue, tasks, transitions
from moderation.models import Decision, Heartbeat, ModerationStatus
from tests.fake_provider import Drip, FakeProvider, Scripted
from tests.helpers import ROOT, demo_moderation_settings, run_python

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ModerationStatus


def wait_for(condition, *, timeout=60.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def status_of(obj) -> str:
    return type(obj).objects.values_list("moderation_status", flat=True).get(pk=obj.pk)


@pytest.fixture
def cluster_env(transactional_db, settings, demo_model_dir, media_root, tmp_path):
    settings.MODERATION = demo_moderation_settings(demo_model_dir)
    return {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "EMBEDDED_PG_DATABASE": connection.settings_dict["NAME"],
        "MEDIA_ROOT": str(media_root),
        "MODERATION_SETTINGS": json.dumps(settings.MODERATION),
        "Q_WORKERS": "2",
        "Q_TIMEOUT": "6",
        "Q_RETRY": "8",
    }


@pytest.fixture
def start_cluster(cluster_env, tmp_path):
    """Start `manage.py qcluster` with the test database; stop it (and its workers) after the test."""
    started = []

    def start(**extra_env):
        env = {**os.environ, **cluster_env, **extra_env}
        env.pop("DATABASE_URL", None)
        log = (tmp_path / f"qcluster-{len(started)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    connection.close()  # the flush after the test needs no lingering locks


def test_the_cluster_flags_mismatches_and_duplicates_and_rescores_edits(
    start_cluster, listing_factory, user_factory, photo
):
    start_cluster()
    matching = listing_factory(title="Red ceramic mug", image=photo("red", "cup"))
    mismatched = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    wait_for(lambda: status_of(matching) == S.OK and status_of(mismatched) == S.FLAGGED, what="scoring")
    copy = listing_factory(title="Mug, red", image=photo("red", "cup"), seller=user_factory())
    wait_for(lambda: status_of(copy) == S.FLAGGED, what="the duplicate")
    copy.refresh_from_db()
    mismatched.refresh_from_db()
    assert copy.flag_reasons == ["duplicate_image"]
    assert copy.duplicate_of == str(matching.pk)
    assert mismatched.flag_reasons == ["text_image_mismatch"]

    mismatched.title = "Blue hiking boots"
    mismatched.save()
    wait_for(lambda: status_of(mismatched) == S.OK, what="the edit to be scored")


def test_saves_and_edits_arriving_while_tasks_coalesce_are_all_scored_in_their_last_version(
    start_cluster, listing_factory, user_factory, photo
):
    """Tasks claim and score waiting listings together (moderation/claims.py) while the
    sellers keep saving and editing, each save its own transaction: none is lost, and
    every listing's last score is for its last version."""
    start_cluster()
    seller = user_factory()  # one seller: similar photos are not duplicates
    colours = ["red", "blue", "green", "yellow"]
    listings = []
    for i in range(48):
        colour = colours[i % 4]
        listings.append(
            # Titles apart enough not to be the seller's reposts of one listing.
            listing_factory(
                title=f"{colour} mug {i} {uuid.uuid4().hex[:10]}",
                image=photo(colour, "cup", seed=f"mug-{i}"),
                seller=seller,
            )
        )
        if i % 4 == 3:
            edited = listings[i // 2]
            edited.title += ", like new"
            edited.save()
    wait_for(
        lambda: not Listing.objects.filter(moderation_status=S.PENDING).exists(),
        timeout=120,
        what="every listing to be scored",
    )
    assert set(Listing.objects.values_list("moderation_status", flat=True)) == {S.OK}
    for listing in Listing.objects.all():
        last = transitions.history(listing).first()
        assert (last.reason, last.content_version) == ("scored", listing.moderation_version)


def test_a_decision_survives_a_rescan_and_a_task_run_twice_writes_once(
    start_cluster, listing_factory, photo, admin_user
):
    start_cluster()
    listing = listing_factory(title="Yellow rain jacket", image=photo("purple", "shirt"))
    queue.enqueue("catalog.listing", listing.pk, 1)  # the same task a second time
    wait_for(lambda: status_of(listing) == S.FLAGGED, what="scoring")
    listing.refresh_from_db()
    scored_at = listing.moderated_at
    transitions.reject(listing, actor=admin_user, reason="wrong photo")
    transitions.rescan(listing, actor=admin_user)
    wait_for(lambda: Listing.objects.get(pk=listing.pk).moderated_at > scored_at, what="the rescan")
    listing.refresh_from_db()
    assert listing.moderation_status == S.REJECTED
    scored = Decision.objects.filter(object_pk=str(listing.pk), reason="scored")
    assert scored.count() == 1


def test_the_redis_broker_runs_the_same_pipeline(start_cluster, cluster_env, photo, media_root):
    redis_url = "redis://127.0.0.1:6379/15"
    name = f"moderation-test-{uuid.uuid4().hex[:8]}"
    start_cluster(Q_REDIS_URL=redis_url, Q_CLUSTER_NAME=name)
    # The saving process must use Redis too: it is the one that enqueues on commit.
    code = (
        "import django, sys; django.setup();"
        "from django.contrib.auth.models import User; from django.core.files.base import ContentFile;"
        "from catalog.models import Category, Listing;"
        "u = User.objects.create(username='redis-seller');"
        "c = Category.objects.create(name='Clothing', slug='clothing');"
        "l = Listing(seller=u, category=c, title='Red hiking boots', price=10);"
        "l.image.save('boots.jpg', ContentFile(open(sys.argv[1], 'rb').read()), save=False); l.save();"
        "print(l.pk)"
    )
    path = media_root.parent / "boots.jpg"
    path.write_bytes(photo("blue", "shoe"))
    result = run_python(code, args=[str(path)], env={**cluster_env, "Q_REDIS_URL": redis_url, "Q_CLUSTER_NAME": name})
    assert result.returncode == 0, result.stderr
    listing = Listing.objects.get(pk=int(result.stdout.strip()))
    wait_for(lambda: status_of(listing) == S.FLAGGED, what="scoring through Redis")


@pytest.fixture
def provider():
    server = FakeProvider(dims=512).start()
    yield server
    server.stop()


def http_settings(provider, *, options=None, **extra) -> str:
    # A task's worst case on the embedder (two calls of 2.5 s) stays within its budget (90% of Q_TIMEOUT):
    # check moderation.E005 would stop the cluster from starting otherwise.
    return json.dumps(
        {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {
                    "base_url": provider.url,
                    "dimensions": 512,
                    "max_retries": 0,
                    "timeout": 30,
                    "deadline_seconds": 2.5,
                    **(options or {}),
                },
            },
            **extra,
        }
    )


def test_a_worker_killed_mid_task_does_not_lose_the_listing(start_cluster, provider, listing_factory, photo, settings):
    provider.delay = 2.0
    settings.MODERATION = json.loads(http_settings(provider))
    cluster = start_cluster(MODERATION_SETTINGS=http_settings(provider))
    listing = listing_factory(image=photo("red"))
    wait_for(lambda: provider.in_flight > 0, what="the task to call the embedder")
    port = provider.server.server_address[1]
    victims = [
        child
        for child in psutil.Process(cluster.pid).children(recursive=True)
        if any(c.raddr and c.raddr.port == port for c in child.net_connections(kind="tcp"))
    ]
    assert victims, "no worker was talking to the embedder"
    for victim in victims:
        victim.send_signal(signal.SIGKILL)
    provider.delay = 0.0
    # django-q2 re-delivers the un-acknowledged task after Q_RETRY seconds.
    # (The fake provider's text and image vectors do not agree, so "scored" may mean flagged.)
    wait_for(lambda: status_of(listing) in (S.OK, S.FLAGGED), timeout=60, what="the re-delivered task")
    assert cluster.poll() is None


def test_an_embedder_outage_leaves_work_pending_or_errored_and_all_is_scored_when_it_returns(
    start_cluster, provider, listing_factory, photo, settings
):
    extra = {"RETRY_BASE_DELAY_SECONDS": 1, "MAX_ATTEMPTS": 2, "ERROR_RETRY_DELAY_SECONDS": 1}
    settings.MODERATION = json.loads(http_settings(provider, **extra))
    start_cluster(MODERATION_SETTINGS=http_settings(provider, **extra))
    provider.down = True
    listings = [listing_factory(title=f"Red thing {i}", image=photo("red", seed=str(i))) for i in range(4)]
    # An attempt is counted before the embedder call and its outcome recorded after it:
    # wait for both (moderation_started_at is cleared with the outcome).
    wait_for(
        lambda: all(
            row.moderation_attempts >= 1 and row.moderation_started_at is None
            for row in Listing.objects.filter(pk__in=[x.pk for x in listings])
        ),
        what="the first failed attempts",
    )
    assert set(Listing.objects.values_list("moderation_status", flat=True)) <= {S.PENDING, S.ERROR}
    assert set(Listing.objects.values_list("moderation_error", flat=True)) == {"unavailable"}
    tasks.sweep()  # the schedule does this every minute; retries still fail while it is down
    wait_for(
        lambda: Listing.objects.filter(moderation_attempts__gte=2, moderation_started_at__isnull=True).count() == 4,
        what="second attempts",
    )
    assert Listing.objects.filter(moderation_status=S.ERROR).count() == 4

    provider.down = False
    time.sleep(1.1)  # ERROR_RETRY_DELAY_SECONDS
    assert tasks.sweep() == 4
    wait_for(
        lambda: not Listing.objects.exclude(moderation_status__in=[S.OK, S.FLAGGED]).exists(),
        what="every listing to be scored after the outage",
    )


def test_a_listing_that_kills_its_worker_on_every_delivery_ends_in_error_and_the_others_are_scored(
    start_cluster, demo_model_dir, listing_factory, photo, settings, tmp_path
):
    """Issue #10, fault 10: SIGKILL 1.5 s into every delivery of one listing's task.
    The listings saved with it (and coalesced with it) are scored; it ends in
    ``error``/``worker_crashed`` after MAX_ATTEMPTS deliveries, and neither the queue
    nor the sweeper delivers it again."""
    deliveries = tmp_path / "deliveries.log"
    settings.MODERATION = demo_moderation_settings(
        demo_model_dir,
        EMBEDDER={
            "BACKEND": "tests.embedders.CrashingEmbedder",
            "OPTIONS": {
                "model_dir": str(demo_model_dir),
                "threads": 1,
                "delay_seconds": 1.5,
                "deliveries_log": str(deliveries),
            },
        },
        MAX_ATTEMPTS=2,
    )
    # Saved before the cluster starts: their tasks wait, and the first one coalesces them.
    crasher = listing_factory(title="Yellow lamp CRASH", image=photo("yellow"))
    others = [
        listing_factory(title="Red ceramic mug", image=photo("red", "cup")),
        listing_factory(title="Red hiking boots", image=photo("blue", "shoe")),
        listing_factory(title="Green vase", image=photo("green")),
    ]
    start_cluster(MODERATION_SETTINGS=json.dumps(settings.MODERATION), Q_TIMEOUT="4", Q_RETRY="5")
    wait_for(lambda: status_of(crasher) == S.ERROR, timeout=90, what="the crasher to end in error")
    wait_for(lambda: all(status_of(x) in (S.OK, S.FLAGGED) for x in others), what="the others to be scored")
    crasher.refresh_from_db()
    assert (crasher.moderation_error, crasher.moderation_attempts) == ("worker_crashed", 2)
    assert all(Listing.objects.get(pk=x.pk).moderation_attempts == 0 for x in others)
    wait_for(lambda: not OrmQ.objects.exists(), what="the queue to be empty")
    time.sleep(6)  # longer than Q_RETRY: a task still held by the broker would come back
    assert len(deliveries.read_text().splitlines()) == 2
    assert tasks.sweep() == 0
    assert status_of(crasher) == S.ERROR


def cluster_processes(cluster) -> set[int]:
    return {child.pid for child in psutil.Process(cluster.pid).children(recursive=True)}


def first_attempt_recorded(listing) -> bool:
    """The attempt is counted before the embedder call and its outcome recorded after it,
    when ``moderation_started_at`` is cleared: both are done."""
    return Listing.objects.filter(pk=listing.pk, moderation_attempts=1, moderation_started_at__isnull=True).exists()


def test_a_provider_dripping_one_byte_a_second_leaves_the_listing_pending_with_a_transient_error_in_time(
    start_cluster, provider, listing_factory, photo, settings
):
    """With Q_TIMEOUT 6 s, a one-call deadline of 1 s: the task records the failure itself,
    well before django-q2 would kill its worker."""
    moderation = http_settings(provider, options={"deadline_seconds": 1, "timeout": 5})
    settings.MODERATION = json.loads(moderation)
    cluster = start_cluster(MODERATION_SETTINGS=moderation)
    wait_for(lambda: len(cluster_processes(cluster)) >= 5, what="the cluster's workers")  # sentinel, pusher, monitor, 2
    processes = cluster_processes(cluster)
    provider.drip = Drip(interval=1.0)
    saved = time.monotonic()
    listing = listing_factory(image=photo("red"))
    wait_for(lambda: first_attempt_recorded(listing), timeout=20, what="the attempt")
    assert time.monotonic() - saved < 6
    listing.refresh_from_db()
    assert (listing.moderation_status, listing.moderation_attempts) == (S.PENDING, 1)
    assert listing.moderation_error == "deadline_exceeded"
    assert listing.moderation_retry_at is not None
    time.sleep(6)  # past Q_TIMEOUT: a worker still blocked would now be killed and replaced
    assert cluster_processes(cluster) == processes


def test_a_dripping_provider_ends_listings_scored_alone_in_deadline_exceeded_and_never_kills_a_worker(
    start_cluster, provider, listing_factory, photo, settings
):
    """Issue #10 follow-up, fault 1: eight listings one attempt from MAX_ATTEMPTS, each
    scored alone in a call of up to 1 s (worst case 2 s), with Q_TIMEOUT 6 s. A task
    starts the calls that end within its budget and re-queues the others: every
    listing ends in ``error``/``deadline_exceeded``, none in ``worker_crashed``, and no
    worker is killed."""
    moderation = http_settings(provider, options={"deadline_seconds": 1, "timeout": 5}, MAX_ATTEMPTS=2)
    settings.MODERATION = json.loads(moderation)
    listings = [listing_factory(title=f"Red thing {i}", image=photo("red", seed=str(i))) for i in range(8)]
    rows = Listing.objects.filter(pk__in=[x.pk for x in listings])
    rows.update(moderation_attempts=1, moderation_error="unavailable")  # their tasks wait in the queue
    provider.drip = Drip(interval=1.0)
    cluster = start_cluster(MODERATION_SETTINGS=moderation)
    wait_for(lambda: len(cluster_processes(cluster)) >= 5, what="the cluster's workers")
    processes = cluster_processes(cluster)
    wait_for(
        lambda: not rows.exclude(moderation_status=S.ERROR).exists(), timeout=90, what="every listing to end in error"
    )
    # A transient failure each (on a loaded machine the dripping test provider may also
    # refuse a connection: `unavailable`), never a crashed worker.
    assert {attempts for _code, attempts in rows.values_list("moderation_error", "moderation_attempts")} == {2}
    assert set(rows.values_list("moderation_error", flat=True)) <= {"deadline_exceeded", "unavailable"}
    assert rows.filter(moderation_error="deadline_exceeded").exists()
    assert cluster_processes(cluster) == processes


def test_a_provider_refusing_every_input_leaves_listings_pending_and_they_are_scored_once_it_is_fixed(
    start_cluster, provider, listing_factory, photo, settings
):
    moderation = http_settings(provider, RETRY_MAX_DELAY_SECONDS=1)
    settings.MODERATION = json.loads(moderation)
    start_cluster(MODERATION_SETTINGS=moderation)
    provider.model = "clip-vit-large-patch14"  # settings name another model: 400 to every input
    listings = [listing_factory(title=f"Red thing {i}", image=photo("red", seed=str(i))) for i in range(3)]
    rows = Listing.objects.filter(pk__in=[x.pk for x in listings])
    wait_for(
        lambda: set(rows.values_list("moderation_error", flat=True)) == {"refuses_all_inputs"},
        what="the configuration error on every listing",
    )
    assert set(rows.values_list("moderation_status", "moderation_attempts")) == {(S.PENDING, 0)}
    assert not rows.filter(moderation_retry_at__isnull=True).exists()

    provider.model = None  # the provider serves the model the settings name
    time.sleep(1.1)  # RETRY_MAX_DELAY_SECONDS
    tasks.sweep()
    wait_for(
        lambda: not rows.exclude(moderation_status__in=[S.OK, S.FLAGGED]).exists(),
        what="every listing to be scored once the provider accepts them",
    )


def test_a_failed_call_for_the_category_prompts_is_recorded_on_the_listing_with_a_retry_time(
    start_cluster, provider, listing_factory, category_factory, photo, settings
):
    moderation = http_settings(provider)
    settings.MODERATION = json.loads(moderation)
    category_factory("Garden")  # two categories: a fresh worker embeds their prompts once
    provider.fail_when(
        lambda items: items[0][1].startswith("a photo of"), Scripted(200, body="<html>Gateway login</html>")
    )
    start_cluster(MODERATION_SETTINGS=moderation)
    listing = listing_factory(image=photo("red"), category=category_factory("Kitchen"))
    wait_for(lambda: first_attempt_recorded(listing), what="the recorded attempt")
    listing.refresh_from_db()
    assert (listing.moderation_status, listing.moderation_attempts) == (S.PENDING, 1)
    assert listing.moderation_error == "bad_response"
    assert listing.moderation_retry_at is not None


def moderation_health(env: dict) -> subprocess.CompletedProcess:
    """``manage.py moderation_health`` as a supervisor runs it."""
    full_env = {k: v for k, v in {**os.environ, **env}.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "manage.py", "moderation_health"], cwd=ROOT, env=full_env, capture_output=True, text=True
    )


def test_a_cluster_whose_idle_workers_were_killed_fails_the_health_check_and_scores_all_after_a_restart(
    start_cluster, cluster_env, demo_model_dir, listing_factory, photo, settings
):
    """Issue #15: SIGKILL both idle workers, so the one blocked in the task queue's read
    (holding its lock) is among them. Their replacements wait on that lock for ever
    (django-q2 issue 23): the cluster is alive and runs nothing, and only the health
    check tells. A supervisor's restart (SIGKILL the process group, start again) scores
    every waiting listing."""
    settings.MODERATION = demo_moderation_settings(demo_model_dir, HEARTBEAT_MAX_AGE_SECONDS=5)
    env = {**cluster_env, "MODERATION_SETTINGS": json.dumps(settings.MODERATION)}
    cluster = start_cluster(MODERATION_SETTINGS=env["MODERATION_SETTINGS"])
    wait_for(lambda: len(cluster_processes(cluster)) >= 5, what="the cluster's workers")
    async_task("moderation.tasks.sweep")  # the schedule's first run comes only after 30 s
    wait_for(lambda: Heartbeat.objects.filter(name="sweep").exists(), what="the sweep's heartbeat")
    assert moderation_health(env).returncode == 0

    # The sentinel spawns its workers first, then the monitor and the pusher.
    (sentinel,) = psutil.Process(cluster.pid).children()
    workers = sorted(sentinel.children(), key=lambda p: p.pid)[:2]
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
    killed = {w.pid for w in workers}
    wait_for(lambda: len({p.pid for p in sentinel.children()} - killed) >= 4, what="replacement workers")
    listings = [listing_factory(title=f"Red mug {i}", image=photo("red", "cup", seed=str(i))) for i in range(3)]
    async_task("moderation.tasks.sweep")  # what the schedule does every minute: it waits too
    time.sleep(10)  # over HEARTBEAT_MAX_AGE_SECONDS and Q_RETRY: a working cluster would have scored them
    assert {status_of(x) for x in listings} == {S.PENDING}, "the killed workers did not wedge the cluster"
    wedged = moderation_health(env)
    assert wedged.returncode == 1
    assert "The task cluster runs no task" in wedged.stderr
    assert cluster.poll() is None  # alive, and idle for ever

    os.killpg(cluster.pid, signal.SIGKILL)  # what systemd does after TimeoutStopSec
    cluster.wait()
    start_cluster(MODERATION_SETTINGS=env["MODERATION_SETTINGS"])
    # The ORM broker re-delivers what the wedged cluster had taken after Q_RETRY.
    wait_for(lambda: all(status_of(x) == S.OK for x in listings), what="every waiting listing to be scored")
    wait_for(lambda: moderation_health(env).returncode == 0, what="the health check to pass")


def test_listings_saved_faster_than_they_are_scored_share_few_drain_tasks_and_none_is_lost(
    start_cluster, listing_factory, user_factory, photo
):
    """Issue #14: the save path queues a drain only when none is queued and not yet
    started (moderation/drains.py). Saved with the cluster stopped, 40 listings queue one
    task; while the cluster runs, 40 more saved quickly queue far fewer than 40, and every
    listing is scored."""
    from django_q.signals import pre_enqueue

    enqueued = []

    def count(sender, task, **kwargs):
        enqueued.append(task["func"])

    pre_enqueue.connect(count, dispatch_uid="test-drains-count")
    try:
        seller = user_factory()
        saved = [
            listing_factory(
                title=f"red mug {i} {uuid.uuid4().hex[:10]}", image=photo("red", "cup", seed=f"a{i}"), seller=seller
            )
            for i in range(40)
        ]
        assert enqueued == ["moderation.tasks.drain"]
        start_cluster()
        saved += [
            listing_factory(
                title=f"blue mug {i} {uuid.uuid4().hex[:10]}", image=photo("blue", "cup", seed=f"b{i}"), seller=seller
            )
            for i in range(40)
        ]
    finally:
        pre_enqueue.disconnect(dispatch_uid="test-drains-count")
    assert set(enqueued) == {"moderation.tasks.drain"}
    assert len(enqueued) < 20  # 80 listings saved
    wait_for(
        lambda: not Listing.objects.filter(moderation_status=S.PENDING).exists(),
        timeout=120,
        what="every listing to be scored",
    )
    assert Listing.objects.filter(pk__in=[x.pk for x in saved]).exclude(moderated_at=None).count() == 80
