"""A small embedding provider on 127.0.0.1 that speaks the three wire formats.

It embeds for real, deterministically: a text by hashing its words, an image by its
mean colour. Tests script faults with ``fail_next`` (status, headers, body), with
``fail_when`` (every request whose inputs match), a delay, a slow drip (``drip``: one
byte every so many seconds, headers included or not), an endless body (``endless``) or a
served ``model`` that refuses requests naming another, and read back every request it
received.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def text_vector(text: str, dims: int) -> list[float]:
    vector = np.zeros(dims)
    for word in text.lower().split():
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
        vector += np.random.default_rng(seed).standard_normal(dims)
    vector[0] += 0.1  # never all-zero, even for an empty text
    return vector.tolist()


def image_vector(data: str, dims: int) -> tuple[list[float], tuple[int, int]]:
    if data.startswith("data:"):
        data = data.split(",", 1)[1]
    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    mean = np.asarray(image, dtype=np.float64).mean(axis=(0, 1)) / 255
    vector = np.zeros(dims)
    vector[:3] = mean
    vector[3] = 0.05
    return vector.tolist(), image.size


@dataclass
class Scripted:
    status: int
    headers: dict = field(default_factory=dict)
    body: bytes | str | dict | None = None
    delay: float = 0.0


@dataclass
class Drip:
    """Answer normally, but send one byte every ``interval`` seconds: the body, or everything."""

    interval: float = 1.0
    headers: bool = False


class FakeProvider:
    def __init__(self, *, dims: int = 8) -> None:
        self.dims = dims
        self.requests: list[dict] = []
        self.image_sizes: list[tuple[int, int]] = []
        self.script: list[Scripted] = []
        self.max_image_side: int | None = None  # answer 413 to larger images
        self.delay = 0.0
        self.down = False  # answer every request with 503 while True
        self.rules: list[tuple] = []  # (predicate over [(kind, value), ...], Scripted), see fail_when
        self.drip: Drip | None = None
        self.endless = False  # status 200, then body bytes until the client hangs up
        self.model: str | None = None  # when set, a request naming another model gets 400
        self.stopping = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, *answers: Scripted) -> None:
        self.script.extend(answers)

    def fail_when(self, predicate, answer: Scripted) -> None:
        """Give ``answer`` to every request whose inputs [(kind, value), ...] satisfy ``predicate``."""
        self.rules.append((predicate, answer))

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                with provider.lock:
                    provider.in_flight += 1
                    provider.max_in_flight = max(provider.max_in_flight, provider.in_flight)
                    body = json.loads(raw)
                    provider.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                    scripted = provider.script.pop(0) if provider.script else None
                    items = self._items(body)
                    scripted = scripted or next((answer for test, answer in provider.rules if test(items)), None)
                try:
                    time.sleep(scripted.delay if scripted else provider.delay)
                    if scripted:
                        self._send(scripted.status, scripted.body, scripted.headers)
                    elif provider.down:
                        self._send(503, {"error": "temporarily unavailable"})
                    elif provider.model and body.get("model") != provider.model:
                        self._send(400, {"error": f"model {body.get('model')!r} not found"})
                    elif provider.endless:
                        self._send_endless()
                    else:
                        self._answer(body)
                finally:
                    with provider.lock:
                        provider.in_flight -= 1

            def _answer(self, body):
                items = self._items(body)
                rows = []
                for kind, value in items:
                    if kind == "text":
                        rows.append(text_vector(value, provider.dims))
                        continue
                    vector, size = image_vector(value, provider.dims)
                    provider.image_sizes.append(size)
                    if provider.max_image_side and max(size) > provider.max_image_side:
                        self._send(413, {"error": "payload too large"})
                        return
                    rows.append(vector)
                data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
                first = body["input"][0]
                if isinstance(first, dict) and "type" not in first:
                    data.reverse()  # Jina's answer is keyed by index; prove the client sorts it
                self._send(200, {"data": data, "model": body.get("model")})

            def _items(self, body):
                items = []
                for entry in body["input"]:
                    if isinstance(entry, str):  # OpenAI-style: modality says what the strings are
                        items.append((body["modality"], entry))
                    elif "type" in entry:  # the seed format
                        items.append((entry["type"], entry["data"]))
                    else:  # Jina
                        kind = "text" if "text" in entry else "image"
                        items.append((kind, entry[kind]))
                return items

            def _send(self, status, body, headers=None):
                if isinstance(body, dict | list):
                    payload, content_type = json.dumps(body).encode(), "application/json"
                elif isinstance(body, str):
                    payload, content_type = body.encode(), "text/html"
                else:
                    payload, content_type = body or b"", "application/octet-stream"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                drip = provider.drip  # as it was when the answer began: a test may reset it meanwhile
                if drip and drip.headers:
                    self._drip(b"".join(self._headers_buffer) + b"\r\n" + payload, drip.interval)
                    self._headers_buffer = []
                    return
                self.end_headers()
                if drip:
                    self._drip(payload, drip.interval)
                    return
                # A client killed mid-request (as a test meant it to be) is not an error here.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

            def _drip(self, data: bytes, interval: float):
                """One byte every ``interval`` seconds, until done, the client hangs up or the provider stops."""
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.flush()
                    for i in range(len(data)):
                        if provider.stopping.wait(interval):
                            return
                        self.wfile.write(data[i : i + 1])

            def _send_endless(self):
                """A 200 whose JSON body never ends (no length: it ends when the connection does)."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(b'{"data": [{"index": 0, "embedding": [')
                    while not provider.stopping.is_set():
                        self.wfile.write(b"0.5, " * 8192)

        return Handler
