"""Hosted multimodal embedding APIs: one backend, one small adapter per wire format.

``HttpEmbedder`` owns everything the formats share: the pooled ``requests.Session``,
batching, running the text and image batches at once, retries with backoff and
``Retry-After``, downscaling on 413, validating answers, and recording latency and
an estimated cost per call. A ``WireFormat`` only says how a batch becomes a request
and how a response becomes vectors. Choose one with the ``wire_format`` option, by
dotted path or by the short names in ``WIRE_FORMATS``.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import requests
from django.utils.module_loading import import_string
from PIL import Image

from .base import (
    Embedder,
    EmbedderConfigurationError,
    PermanentEmbedError,
    TransientEmbedError,
)
from .images import encode_jpeg

logger = logging.getLogger("moderation.embedders")

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}


class WireFormat:
    """How one provider's API spells a batch of texts or images, and its answer."""

    path = "/embeddings"

    def request(self, *, model: str, kind: str, items: list[str]) -> tuple[str, dict]:
        """Return (path, JSON body) for ``items``: texts, or base64 JPEG images when ``kind == "image"``."""
        raise NotImplementedError

    def vectors(self, body: dict) -> list:
        """The embeddings of a response body, in input order."""
        return [row["embedding"] for row in sorted(body["data"], key=lambda row: row["index"])]


class SeedFormat(WireFormat):
    """The original design's API: typed inputs; ``/embeddings/batch`` for more than one."""

    def request(self, *, model, kind, items):
        path = "/embeddings/batch" if len(items) > 1 else "/embeddings"
        return path, {"model": model, "input": [{"type": kind, "data": item} for item in items]}

    def vectors(self, body):
        return [row["embedding"] for row in body["data"]]


class JinaFormat(WireFormat):
    """Jina's multimodal embeddings API: ``{"text": ...}`` or ``{"image": <base64>}`` inputs."""

    def request(self, *, model, kind, items):
        return self.path, {"model": model, "input": [{kind: item} for item in items]}


class OpenAIFormat(WireFormat):
    """The OpenAI-style API that infinity-emb serves: a plain list plus ``modality``; images as data URIs."""

    def request(self, *, model, kind, items):
        if kind == "image":
            items = [f"data:image/jpeg;base64,{item}" for item in items]
        return self.path, {"model": model, "input": items, "modality": kind, "encoding_format": "float"}


WIRE_FORMATS = {"seed": SeedFormat, "jina": JinaFormat, "openai": OpenAIFormat}


@dataclass
class CallRecord:
    """One HTTP call: what it embedded, how long it took, what it is estimated to cost."""

    kind: str
    items: int
    status: int | None
    latency_ms: float
    cost: float
    attempt: int


@dataclass
class Usage:
    """Totals since the embedder was built; ``calls`` keeps the most recent records."""

    requests: int = 0
    items: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    calls: list[CallRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, record: CallRecord) -> None:
        with self.lock:
            self.requests += 1
            self.items += record.items if record.status == 200 else 0
            self.cost += record.cost
            self.latency_ms += record.latency_ms
            self.calls = [*self.calls[-99:], record]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpEmbedder(Embedder):
    """A hosted multimodal embedding API.

    Options (``MODERATION["EMBEDDER"]["OPTIONS"]``):

    - ``base_url`` (required), ``model`` (the provider's model name), ``dimensions``
      (required: what the model returns), ``api_key`` (sent as a Bearer token),
      ``wire_format`` (``"seed"``, ``"jina"``, ``"openai"`` or a dotted path).
    - ``max_batch`` (inputs per request), ``timeout`` (seconds per request).
    - ``max_retries``, ``backoff_base`` and ``backoff_max`` (seconds): exponential
      backoff with full jitter. ``max_wait``: the longest ``Retry-After`` honoured by
      sleeping in the worker; a longer one is returned as a ``TransientEmbedError``
      carrying the delay, so the task can be re-scheduled instead.
    - ``upload_max_side``: images are re-encoded as JPEG no larger than this;
      ``downscale_to``: the size a 413 answer makes us retry at, once.
    - ``cost_per_text`` and ``cost_per_image``: the provider's price per input, to log
      an estimated cost per call.
    """

    def __init__(
        self,
        *,
        base_url: str,
        dimensions: int,
        model: str = "clip-vit-base-patch32",
        api_key: str | None = None,
        wire_format: str = "seed",
        model_id: str | None = None,
        max_batch: int = 32,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_wait: float = 30.0,
        upload_max_side: int = 1024,
        downscale_to: int = 512,
        cost_per_text: float = 0.0,
        cost_per_image: float = 0.0,
    ) -> None:
        if not base_url:
            raise EmbedderConfigurationError("The HTTP embedder needs MODERATION['EMBEDDER']['OPTIONS']['base_url'].")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.dimensions = int(dimensions)
        self.model_id = model_id or f"http:{model}"
        format_class = WIRE_FORMATS.get(wire_format)
        if format_class is None:
            try:
                format_class = import_string(wire_format)
            except ImportError:
                raise EmbedderConfigurationError(
                    f"Unknown wire_format {wire_format!r}: use {', '.join(WIRE_FORMATS)} or a dotted path "
                    "to a WireFormat subclass."
                ) from None
        self.wire_format = format_class()
        self.max_batch = max(1, int(max_batch))
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_wait = max_wait
        self.upload_max_side = upload_max_side
        self.downscale_to = downscale_to
        self.prices = {"text": cost_per_text, "image": cost_per_image}
        self.usage = Usage()
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Accept"] = "application/json"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.image_size = upload_max_side

    def embed(self, *, texts, images):
        """Texts and images go out at once, on two threads (the session is thread-safe for this)."""
        if not texts or not images:
            return super().embed(texts=texts, images=images)
        with ThreadPoolExecutor(2) as pool:
            text_future = pool.submit(self.embed_texts, texts)
            image_future = pool.submit(self.embed_images, images)
            return text_future.result(), image_future.result()

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        return self._embed_batches("text", texts)

    def _embed_images(self, images: list[Image.Image]) -> np.ndarray:
        return self._embed_batches("image", images)

    def _embed_batches(self, kind: str, items: list) -> np.ndarray:
        parts = []
        for start in range(0, len(items), self.max_batch):
            batch = items[start : start + self.max_batch]
            parts.append(self.validate(self._call(kind, batch), len(batch)))
        return np.concatenate(parts, axis=0)

    def _encode(self, kind: str, batch: list, *, max_side: int) -> list[str]:
        if kind == "text":
            return batch
        return [base64.b64encode(encode_jpeg(image, max_side=max_side)).decode("ascii") for image in batch]

    def _call(self, kind: str, batch: list) -> list:
        max_side = self.upload_max_side
        downscaled = False
        attempt = 0
        while True:
            path, body = self.wire_format.request(
                model=self.model, kind=kind, items=self._encode(kind, batch, max_side=max_side)
            )
            started = time.perf_counter()
            status = None
            try:
                response = self.session.post(self.base_url + path, json=body, timeout=self.timeout)
                status = response.status_code
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure: Exception = exc
                response = None
            finally:
                self._record(kind, len(batch), status, started, attempt)
            if response is not None and status == 200:
                return self._parse(response)
            if response is not None and status == 413 and kind == "image" and not downscaled:
                # The provider's size limit is not published; one retry at a small size.
                max_side, downscaled = min(max_side, self.downscale_to), True
                continue
            if response is not None:
                failure = self._error_for(response, kind)
                if not isinstance(failure, TransientEmbedError):
                    raise failure
            retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
            attempt += 1
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if attempt > self.max_retries or delay > self.max_wait:
                raise TransientEmbedError(
                    f"{self.base_url}{path} is unavailable after {attempt} attempt(s): {failure}",
                    code="rate_limited" if status == 429 else "unavailable",
                    retry_after=delay,
                ) from (failure if not isinstance(failure, TransientEmbedError) else None)
            logger.warning("embedding call failed (%s); retrying in %.2fs", failure, delay)
            time.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: a uniform draw up to the exponential ceiling."""
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _record(self, kind: str, items: int, status: int | None, started: float, attempt: int) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        cost = items * self.prices[kind] if status == 200 else 0.0
        self.usage.add(CallRecord(kind, items, status, latency_ms, cost, attempt))
        logger.info(
            "embedding call model=%s kind=%s items=%d status=%s latency_ms=%.1f est_cost=%.6f",
            self.model,
            kind,
            items,
            status,
            latency_ms,
            cost,
        )

    def _parse(self, response: requests.Response) -> list:
        try:
            body = response.json()
        except ValueError:
            snippet = response.text[:80].replace("\n", " ")
            raise TransientEmbedError(
                f"{response.url} answered 200 with a body that is not JSON ({response.headers.get('Content-Type')}: "
                f"{snippet!r}); a proxy or gateway may be in the way.",
                code="bad_response",
            ) from None
        try:
            return self.wire_format.vectors(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TransientEmbedError(
                f"{response.url} answered 200 with JSON this wire format cannot read ({type(exc).__name__}: {exc}). "
                f"Is wire_format={type(self.wire_format).__name__} right for this provider?",
                code="bad_response",
            ) from None

    def _error_for(self, response: requests.Response, kind: str) -> Exception:
        status = response.status_code
        detail = response.text[:200].replace("\n", " ")
        message = f"{response.url} answered {status}: {detail}"
        if status in (401, 403):
            return EmbedderConfigurationError(
                f"{message}. Check MODERATION['EMBEDDER']['OPTIONS']['api_key'].", code="unauthorized"
            )
        if status == 404:
            return EmbedderConfigurationError(f"{message}. Check base_url and model.", code="not_found")
        if status in RETRY_STATUSES or status >= 500:
            return TransientEmbedError(message, code="rate_limited" if status == 429 else "unavailable")
        if status == 413:
            return PermanentEmbedError(
                f"{message}. The image is too large even at {self.downscale_to} pixels.", code="too_large"
            )
        return PermanentEmbedError(message, code="rejected")
