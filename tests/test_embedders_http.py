"""The hosted HTTP backend against a provider running on 127.0.0.1."""

import json
import math
import time

import numpy as np
import pytest
from PIL import Image

from moderation.embedders import EmbedderConfigurationError, PermanentEmbedError, TransientEmbedError
from moderation.embedders.http import HttpEmbedder, parse_retry_after
from tests.fake_provider import Drip, FakeProvider, Scripted


@pytest.fixture
def provider():
    server = FakeProvider(dims=8).start()
    yield server
    server.stop()


@pytest.fixture
def embedder_factory(provider):
    def make(**options):
        options.setdefault("base_url", provider.url)
        options.setdefault("dimensions", 8)
        options.setdefault("backoff_base", 0.01)
        options.setdefault("backoff_max", 0.05)
        options.setdefault("timeout", 5)
        return HttpEmbedder(**options)

    return make


def red(size=(64, 48)):
    return Image.new("RGB", size, (220, 20, 20))


def blue(size=(64, 48)):
    return Image.new("RGB", size, (20, 20, 220))


@pytest.mark.parametrize("wire_format", ["seed", "jina", "openai"])
def test_each_wire_format_embeds_texts_and_images_into_unit_vectors(embedder_factory, provider, wire_format):
    embedder = embedder_factory(wire_format=wire_format)
    texts = embedder.embed_texts(["red mug", "blue kettle", "red mug"])
    images = embedder.embed_images([red(), blue()])
    assert texts.shape == (3, 8)
    assert images.shape == (2, 8)
    assert texts.dtype == np.float32
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-6)
    assert np.allclose(texts[0], texts[2])  # order kept, even when the answer is keyed by index
    assert not np.allclose(texts[0], texts[1])
    assert images[0][0] > images[0][2]  # the red image is red
    assert images[1][2] > images[1][0]


def test_the_seed_format_sends_typed_inputs_and_uses_the_batch_route_for_several(embedder_factory, provider):
    embedder = embedder_factory(wire_format="seed", api_key="sk-test", model="clip-vit-base-patch32")
    embedder.embed_texts(["one"])
    embedder.embed_images([red(), blue()])
    single, batch = provider.requests
    assert single["path"] == "/embeddings"
    assert single["body"] == {"model": "clip-vit-base-patch32", "input": [{"type": "text", "data": "one"}]}
    assert single["headers"]["Authorization"] == "Bearer sk-test"
    assert batch["path"] == "/embeddings/batch"
    assert [item["type"] for item in batch["body"]["input"]] == ["image", "image"]


def test_the_jina_format_sends_text_and_image_objects(embedder_factory, provider):
    embedder_factory(wire_format="jina", model="jina-clip-v2").embed(texts=["a"], images=[red()])
    bodies = sorted((r["body"] for r in provider.requests), key=lambda b: json.dumps(b))
    kinds = sorted(next(iter(body["input"][0])) for body in bodies)
    assert kinds == ["image", "text"]
    assert all(body["model"] == "jina-clip-v2" for body in bodies)


def test_the_openai_format_sends_modality_and_data_uris(embedder_factory, provider):
    embedder_factory(wire_format="openai").embed_images([red()])
    body = provider.requests[0]["body"]
    assert body["modality"] == "image"
    assert body["input"][0].startswith("data:image/jpeg;base64,")


def test_batches_are_split_to_the_configured_maximum(embedder_factory, provider):
    vectors = embedder_factory(max_batch=2).embed_texts([f"text {i}" for i in range(5)])
    assert vectors.shape == (5, 8)
    assert [len(r["body"]["input"]) for r in provider.requests] == [2, 2, 1]


def test_text_and_image_batches_are_embedded_concurrently(embedder_factory, provider):
    provider.delay = 0.3
    texts, images = embedder_factory().embed(texts=["a", "b"], images=[red()])
    assert texts.shape == (2, 8)
    assert images.shape == (1, 8)
    assert provider.max_in_flight == 2


def test_429_with_retry_after_is_retried_and_succeeds(embedder_factory, provider):
    provider.fail_next(Scripted(429, {"Retry-After": "0"}, {"error": "slow down"}))
    assert embedder_factory().embed_texts(["a"]).shape == (1, 8)
    assert len(provider.requests) == 2


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(embedder_factory, provider, status):
    provider.fail_next(Scripted(status, body={"error": "try later"}))
    assert embedder_factory().embed_texts(["a"]).shape == (1, 8)
    assert len(provider.requests) == 2


def test_a_retry_after_past_the_cap_returns_a_transient_error_with_the_delay(embedder_factory, provider):
    provider.fail_next(Scripted(429, {"Retry-After": "120"}, {"error": "quota"}))
    with pytest.raises(TransientEmbedError) as caught:
        embedder_factory(max_wait=30).embed_texts(["a"])
    assert caught.value.retry_after == 120
    assert caught.value.code == "rate_limited"
    assert len(provider.requests) == 1  # no sleeping in the worker


def test_retries_stop_after_the_maximum_with_a_transient_error(embedder_factory, provider):
    provider.fail_next(*[Scripted(503, body={"error": "down"})] * 10)
    with pytest.raises(TransientEmbedError) as caught:
        embedder_factory(max_retries=3).embed_texts(["a"])
    assert caught.value.code == "unavailable"
    assert len(provider.requests) == 4


def test_a_refused_connection_is_a_transient_error(embedder_factory, provider):
    url = provider.url
    provider.stop()
    with pytest.raises(TransientEmbedError):
        embedder_factory(base_url=url, max_retries=1).embed_texts(["a"])


def test_a_timeout_is_retried_then_a_transient_error(embedder_factory, provider):
    provider.delay = 1.0
    with pytest.raises(TransientEmbedError):
        embedder_factory(timeout=0.2, max_retries=1).embed_texts(["a"])
    assert len(provider.requests) == 2


def test_413_downscales_the_image_once_and_retries(embedder_factory, provider):
    provider.max_image_side = 600
    vectors = embedder_factory(upload_max_side=1024, downscale_to=512).embed_images([red((1600, 1200))])
    assert vectors.shape == (1, 8)
    assert provider.image_sizes == [(1024, 768), (512, 384)]


def test_413_again_after_downscaling_is_permanent(embedder_factory, provider):
    provider.max_image_side = 100
    with pytest.raises(PermanentEmbedError) as caught:
        embedder_factory(downscale_to=512).embed_images([red((1600, 1200))])
    assert caught.value.code == "too_large"
    assert len(provider.requests) == 2


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_input_is_permanent(embedder_factory, provider, status):
    provider.fail_next(Scripted(status, body={"error": "bad input"}))
    with pytest.raises(PermanentEmbedError, match="bad input"):
        embedder_factory().embed_texts(["a"])
    assert len(provider.requests) == 2  # the input, then a known-good probe the provider accepts


@pytest.mark.parametrize("kind", ["text", "image"])
def test_a_provider_that_refuses_a_known_good_probe_too_is_a_configuration_error(embedder_factory, provider, kind):
    provider.model = "clip-vit-large-patch14"  # the provider answers 400 to every request naming another model
    embedder = embedder_factory(model="clip-vit-base-patch32")
    with pytest.raises(EmbedderConfigurationError) as caught:
        embedder.embed_texts(["a"]) if kind == "text" else embedder.embed_images([red()])
    assert caught.value.code == "refuses_all_inputs"
    assert "MODERATION['EMBEDDER']['OPTIONS']['model']" in str(caught.value)
    assert len(provider.requests) == 2


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers-and-body"])
def test_a_provider_dripping_one_byte_a_second_is_cut_off_at_the_deadline(embedder_factory, provider, headers):
    provider.drip = Drip(interval=1.0, headers=headers)
    started = time.monotonic()
    with pytest.raises(TransientEmbedError) as caught:
        embedder_factory(timeout=5, deadline_seconds=2, max_retries=0).embed_texts(["a"])
    elapsed = time.monotonic() - started
    assert caught.value.code == "deadline_exceeded"
    assert 2 <= elapsed < 3.5
    assert "deadline_seconds" in str(caught.value)


def test_each_attempt_has_its_own_deadline(embedder_factory, provider):
    provider.drip = Drip(interval=0.5)
    started = time.monotonic()
    with pytest.raises(TransientEmbedError, match="2 attempt"):
        embedder_factory(deadline_seconds=0.5, max_retries=1).embed_texts(["a"])
    assert time.monotonic() - started < 2.5
    assert len(provider.requests) == 2


def test_an_endless_body_stops_at_the_byte_cap(embedder_factory, provider):
    provider.endless = True
    started = time.monotonic()
    with pytest.raises(TransientEmbedError) as caught:
        embedder_factory(max_response_bytes=1_000_000, max_retries=0).embed_texts(["a"])
    assert caught.value.code == "response_too_large"
    assert "max_response_bytes" in str(caught.value)
    assert time.monotonic() - started < 2


def test_a_declared_length_past_the_byte_cap_is_refused_before_reading(embedder_factory, provider):
    provider.fail_next(Scripted(200, body={"data": [{"index": 0, "embedding": [0.1] * 8}], "padding": "x" * 5000}))
    with pytest.raises(TransientEmbedError) as caught:
        embedder_factory(max_response_bytes=4096, max_retries=0).embed_texts(["a"])
    assert caught.value.code == "response_too_large"


def test_a_connection_cut_off_at_the_deadline_is_not_reused(embedder_factory, provider):
    embedder = embedder_factory(deadline_seconds=0.5, max_retries=0)
    provider.drip = Drip(interval=0.2)
    with pytest.raises(TransientEmbedError):
        embedder.embed_texts(["a"])
    provider.drip = None
    assert embedder.embed_texts(["a"]).shape == (1, 8)


def test_the_worst_case_of_one_task_counts_batches_prompts_attempts_and_waits(embedder_factory):
    embedder = embedder_factory(max_batch=8, deadline_seconds=10, max_retries=2, backoff_max=4, max_wait=6)
    # 16 objects: 2 sequential batches (texts and images go out at once), then the prompts.
    # Each call: 3 attempts of 10 s and 2 waits of at most 6 s.
    assert embedder.worst_case_seconds(16) == 3 * (3 * 10 + 2 * 6)
    assert embedder.worst_case_seconds(8) == 2 * (3 * 10 + 2 * 6)


def test_the_default_options_fit_the_default_task_timeout(provider):
    assert HttpEmbedder(base_url=provider.url, dimensions=8).worst_case_seconds(16) < 120


@pytest.mark.parametrize("status", [401, 403])
def test_a_bad_key_is_a_configuration_error(embedder_factory, provider, status):
    provider.fail_next(Scripted(status, body={"error": "invalid key"}))
    with pytest.raises(EmbedderConfigurationError, match="api_key"):
        embedder_factory().embed_texts(["a"])


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (Scripted(200, body=b"{not json"), TransientEmbedError, "bad_response"),
        (Scripted(200, body="<html><body>Gateway login</body></html>"), TransientEmbedError, "bad_response"),
        (Scripted(200, body={"unexpected": []}), TransientEmbedError, "bad_response"),
        (Scripted(200, body={"data": [{"index": 0, "embedding": [0.1] * 8}] * 2}), TransientEmbedError, "bad_response"),
        (
            Scripted(200, body={"data": [{"index": 0, "embedding": [0.1] * 5}]}),
            EmbedderConfigurationError,
            "wrong_dimensions",
        ),
        (
            Scripted(200, body=b'{"data": [{"index": 0, "embedding": [NaN, 1, 1, 1, 1, 1, 1, 1]}]}'),
            TransientEmbedError,
            "bad_response",
        ),
        (
            Scripted(200, body=b'{"data": [{"index": 0, "embedding": [Infinity, 1, 1, 1, 1, 1, 1, 1]}]}'),
            TransientEmbedError,
            "bad_response",
        ),
        (Scripted(200, body={"data": [{"index": 0, "embedding": [0.0] * 8}]}), PermanentEmbedError, "zero_vector"),
    ],
    ids=["malformed-json", "html-200", "wrong-shape", "wrong-count", "wrong-dimension", "nan", "inf", "all-zero"],
)
def test_a_garbled_answer_is_a_clear_error_and_returns_nothing(embedder_factory, provider, answer, error, code):
    provider.fail_next(answer)
    with pytest.raises(error) as caught:
        embedder_factory(max_retries=0).embed_texts(["a"])
    assert caught.value.code == code


def test_each_call_records_latency_and_estimated_cost(embedder_factory, provider, caplog):
    embedder = embedder_factory(cost_per_text=0.0001, cost_per_image=0.001, max_batch=2)
    with caplog.at_level("INFO", logger="moderation.embedders"):
        embedder.embed(texts=["a", "b", "c"], images=[red()])
    assert embedder.usage.requests == 3
    assert embedder.usage.items == 4
    assert embedder.usage.cost == pytest.approx(3 * 0.0001 + 0.001)
    assert all(call.latency_ms > 0 for call in embedder.usage.calls)
    assert "latency_ms=" in caplog.text
    assert "est_cost=" in caplog.text


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("7") == 7
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412450) == pytest.approx(30)
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


def test_an_unknown_wire_format_is_a_configuration_error(provider):
    with pytest.raises(EmbedderConfigurationError, match="wire_format"):
        HttpEmbedder(base_url=provider.url, dimensions=8, wire_format="grpc")


def test_vectors_are_unit_length_even_when_the_provider_does_not_normalise(embedder_factory, provider):
    vector = embedder_factory().embed_texts(["several words here"])[0]
    assert math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-6)
