"""System checks: each id fires on the misconfiguration it names, and only then."""

import pytest

from moderation import checks
from moderation.embedders import get_embedder


@pytest.fixture
def hosted(settings):
    """MODERATION on the HTTP embedder (no call is made: checks only read its options)."""

    def configure(*, timeout: int, **options):
        settings.MODERATION = {
            "EMBEDDER": {
                "BACKEND": "moderation.embedders.http.HttpEmbedder",
                "OPTIONS": {"base_url": "http://127.0.0.1:9", "dimensions": 512, **options},
            },
            "BATCH_SIZE": 16,
        }
        settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": timeout, "retry": timeout + 60}

    return configure


def test_a_task_that_may_wait_on_the_embedder_past_the_queue_timeout_is_an_error(hosted):
    # 16 objects in one call, then the prompts: 2 calls x (3 attempts x 10 s + 2 waits of 8 s) = 92 s.
    hosted(timeout=60, deadline_seconds=10, max_retries=2, max_wait=8, backoff_max=4)
    (error,) = checks.check_embedder_deadline()
    assert error.id == "moderation.E003"
    assert "92 s" in error.msg
    assert "Q_CLUSTER['timeout'] = 60" in error.msg
    assert "deadline_seconds" in error.hint
    assert error.obj is get_embedder()


def test_an_embedder_whose_worst_case_fits_the_queue_timeout_passes(hosted):
    hosted(timeout=120)  # the HTTP embedder's defaults: 100 s
    assert checks.check_embedder_deadline() == []
