"""Hosted multimodal embedding APIs: one backend, one small adapter per wire format.

``HttpEmbedder`` owns everything the formats share: the pooled ``requests.Session``,
batching, running the text and image batches at once, a total deadline and a byte cap
per call (``Deadline``), retries with backoff and ``Retry-After``, downscaling on 413,
telling a refused input from a provider that refuses everything, validating answers,
and recording latency and an estimated cost per call. A ``WireFormat`` only says how a
batch becomes a request and how a response becomes vectors. Choose one with the
``wire_format`` option, by dotted path or by the short names in ``WIRE_FORMATS``.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import logging
import math
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import requests
import urllib3
from django.utils.module_loading import import_string
from PIL import Image

from .base import (
    Embedder,
    EmbedderConfigurationError,
    EmbedderError,
    PermanentEmbedError,
    TransientEmbedError,
)
from .images import encode_jpeg

logger = logging.getLogger("moderation.embedders")

RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}

# Inputs every CLIP-style model embeds. When the provider refuses one of these as well
# as the real input, it is the provider (model name, account) that is wrong, not the input.
PROBES = {"text": "a photo", "image": Image.new("RGB", (64, 64), (128, 128, 128))}


class Deadline:
    """The total time one HTTP call may take: connect, request, headers and the whole body.

    requests' ``timeout`` bounds each socket operation, so a provider that sends a byte
    a second never trips it. While a deadline is current on a thread (``with
    Deadline(seconds):``), every connection that thread opens or reuses (see
    ``DeadlineAdapter``) is watched, and shut down when the time is up: the blocked read
    returns at once, whatever phase it was in. ``expired`` then says why the call failed.
    """

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._ends = time.monotonic() + self.seconds
        Deadline._current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        Deadline._current.deadline = None
        with self._lock:  # a timer firing now finds nothing left to shut down
            self._timer.cancel()
            self._sockets = []

    def left(self) -> float:
        """Seconds until the deadline, at least a millisecond (a socket timeout of 0 means non-blocking)."""
        return max(0.001, self._ends - time.monotonic())

    @classmethod
    def watch(cls, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the current thread's deadline expires (now, if it has)."""
        deadline = getattr(cls._current, "deadline", None)
        if deadline is None or sock is None:
            return
        with deadline._lock:
            deadline._sockets.append(sock)
            if deadline.expired:
                deadline._shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by its owner
            sock.shutdown(socket.SHUT_RDWR)


class _DeadlineConnectionMixin:
    """A urllib3 connection that puts its socket under the current thread's ``Deadline``."""

    def connect(self) -> None:
        super().connect()
        Deadline.watch(self.sock)

    def request(self, *args, **kwargs) -> None:
        Deadline.watch(self.sock)  # a pooled connection, reused (None when it connects anew)
        super().request(*args, **kwargs)


class _DeadlineHTTPConnection(_DeadlineConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections, direct or through an HTTP proxy, honour ``Deadline``."""

    pool_classes = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self.pool_classes

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self.pool_classes
        return manager


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
    - ``max_batch`` (inputs per request).
    - ``deadline_seconds``: the total time of one attempt (connect, request, headers,
      whole body); ``timeout``: the longest wait for any one socket operation (connect,
      each read), cut to what is left of the deadline. ``max_response_bytes``: an
      answer longer than this is not read (``response_too_large``).
    - ``max_retries``, ``backoff_base`` and ``backoff_max`` (seconds): exponential
      backoff with full jitter. ``max_wait``: the longest ``Retry-After`` honoured by
      sleeping in the worker; a longer one is returned as a ``TransientEmbedError``
      carrying the delay, so the task can be re-scheduled instead. The defaults keep
      ``worst_case_seconds(16)`` (100 s) under django-q2's default task timeout.
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
        deadline_seconds: float = 20.0,
        timeout: float = 10.0,
        max_response_bytes: int = 16 * 1024 * 1024,
        max_retries: int = 1,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_wait: float = 10.0,
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
        self.deadline_seconds = deadline_seconds
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_wait = max_wait
        self.upload_max_side = upload_max_side
        self.downscale_to = downscale_to
        self.prices = {"text": cost_per_text, "image": cost_per_image}
        self.usage = Usage()
        self.session = requests.Session()
        adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=8)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Accept"] = "application/json"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.image_size = upload_max_side

    def estimated_cost(self, *, texts: int, images: int) -> float:
        """At ``cost_per_text`` and ``cost_per_image``; retried calls are not counted twice."""
        return texts * self.prices["text"] + images * self.prices["image"]

    def embed(self, *, texts, images):
        """Texts and images go out at once, on two threads (the session is thread-safe for this)."""
        if not texts or not images:
            return super().embed(texts=texts, images=images)
        with ThreadPoolExecutor(2) as pool:
            text_future = pool.submit(self.embed_texts, texts)
            image_future = pool.submit(self.embed_images, images)
            return text_future.result(), image_future.result()

    def worst_case_seconds(self, batch_size: int) -> float:
        """The longest one task scoring ``batch_size`` objects can wait on this provider, in seconds.

        The objects' texts and photos go out at once, each in ceil(batch_size /
        max_batch) calls one after the other; then one call embeds the category prompts
        (up to ``max_batch`` categories). Each call makes up to 1 + ``max_retries``
        attempts of at most ``deadline_seconds``, with a wait of at most
        max(``max_wait``, ``backoff_max``) before each retry. A refused input costs more
        calls (a probe, then one call per object); they are not counted.
        """
        calls = math.ceil(batch_size / self.max_batch) + 1
        per_call = (1 + self.max_retries) * self.deadline_seconds + self.max_retries * max(
            self.max_wait, self.backoff_max
        )
        return calls * per_call

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

    def _call(self, kind: str, batch: list, *, probe: bool = False) -> list:
        """Embed one batch; returns the provider's vectors, after retries.

        Raises ``TransientEmbedError`` with the code of the last failure,
        ``PermanentEmbedError`` when the provider refuses the batch but embeds a
        known-good input (``PROBES``), and ``EmbedderConfigurationError``
        (``refuses_all_inputs``) when it refuses that too.
        """
        max_side = self.upload_max_side
        downscaled = False
        attempt = 0
        while True:
            path, body = self.wire_format.request(
                model=self.model, kind=kind, items=self._encode(kind, batch, max_side=max_side)
            )
            started = time.perf_counter()
            response = content = None
            try:
                response, content = self._post(path, body)
            except TransientEmbedError as exc:
                failure: EmbedderError = exc
            status = response.status_code if response is not None else None
            self._record(kind, len(batch), status, started, attempt)
            if status == 200:
                return self._parse(response, content)
            if status == 413 and kind == "image" and not downscaled:
                # The provider's size limit is not published; one retry at a small size.
                max_side, downscaled = min(max_side, self.downscale_to), True
                continue
            if response is not None:
                failure = self._error_for(response, content)
                if failure.code == "rejected" and not probe and self._refuses_probe(kind):
                    raise EmbedderConfigurationError(
                        f"{failure}. It refuses a known-good {kind} as well: check "
                        "MODERATION['EMBEDDER']['OPTIONS']['model'] and the account's access to that model.",
                        code="refuses_all_inputs",
                    ) from failure
                if not isinstance(failure, TransientEmbedError):
                    raise failure
            retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
            attempt += 1
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if attempt > self.max_retries or delay > self.max_wait:
                raise TransientEmbedError(
                    f"{self.base_url}{path} is unavailable after {attempt} attempt(s): {failure}",
                    code=failure.code,
                    retry_after=delay,
                ) from failure
            logger.warning("embedding call failed (%s); retrying in %.2fs", failure, delay)
            time.sleep(delay)

    def _refuses_probe(self, kind: str) -> bool:
        """Whether the provider refuses a known-good input of ``kind`` too (raises what else the probe meets)."""
        try:
            self._call(kind, [PROBES[kind]], probe=True)
        except PermanentEmbedError:
            return True
        return False

    def _post(self, path: str, body: dict) -> tuple[requests.Response, bytes]:
        """One attempt within ``deadline_seconds``: the response and its body, at most ``max_response_bytes``.

        Raises ``TransientEmbedError``: ``deadline_exceeded``, ``response_too_large``, or
        ``unavailable`` (connection refused or cut, no byte within ``timeout``).
        """
        url = self.base_url + path
        with Deadline(self.deadline_seconds) as deadline:
            try:
                # Each socket operation waits at most `timeout`, and never past the deadline
                # (the Deadline itself stops a drip of bytes that each arrive in time).
                each = min(self.timeout, deadline.left())
                with self.session.post(url, json=body, timeout=(each, each), stream=True) as response:
                    content = self._read(response)
            except requests.RequestException as exc:
                if not deadline.expired:
                    raise TransientEmbedError(f"{url}: {exc}", code="unavailable") from exc
        # A body cut off at the deadline can look complete (one sent without a length).
        if deadline.expired:
            raise TransientEmbedError(
                f"{url} did not answer in full within deadline_seconds={self.deadline_seconds}.",
                code="deadline_exceeded",
            )
        return response, content

    def _read(self, response: requests.Response) -> bytes:
        """The decoded body; raises ``TransientEmbedError`` (``response_too_large``) past ``max_response_bytes``."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise self._too_large(response)
        content = bytearray()
        for chunk in response.iter_content(64 * 1024):
            content += chunk
            if len(content) > self.max_response_bytes:
                raise self._too_large(response)
        return bytes(content)

    def _too_large(self, response: requests.Response) -> TransientEmbedError:
        return TransientEmbedError(
            f"{response.url} sent an answer longer than max_response_bytes={self.max_response_bytes}; "
            "the rest was not read.",
            code="response_too_large",
        )

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

    def _parse(self, response: requests.Response, content: bytes) -> list:
        try:
            body = json.loads(content)
        except ValueError:
            snippet = content[:80].decode("utf-8", "replace").replace("\n", " ")
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

    def _error_for(self, response: requests.Response, content: bytes) -> EmbedderError:
        status = response.status_code
        detail = content[:200].decode("utf-8", "replace").replace("\n", " ")
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
