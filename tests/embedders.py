"""Test-only embedder backends, chosen by dotted path like any other (``tests.embedders.X``)."""

from __future__ import annotations

import os
import signal
import time

from moderation.embedders.onnx_clip import OnnxClipEmbedder


class WorkerKilled(BaseException):
    """What ``CrashingEmbedder(kill=False)`` raises in place of dying: like a kill, no
    ``except Exception`` in the task sees it, and nothing after it runs."""


class CrashingEmbedder(OnnxClipEmbedder):
    """The demo model, except that a batch holding a text with ``marker`` kills the
    process embedding it, ``delay_seconds`` into the call: as a photo that crashes a
    native decoder, or a model that runs out of memory on one input, would.

    ``deliveries_log``: a file that gets one line per crash, so a test counts the
    deliveries a killed worker never reported. ``kill=False`` raises ``WorkerKilled``
    instead of SIGKILL, for tests that run the task in their own process.
    """

    def __init__(
        self, *, marker: str = "CRASH", delay_seconds: float = 0.0, deliveries_log=None, kill=True, **options
    ) -> None:
        super().__init__(**options)
        self.marker, self.delay_seconds, self.deliveries_log, self.kill = marker, delay_seconds, deliveries_log, kill

    def embed(self, *, texts, images):
        if any(self.marker in text for text in texts):
            if self.deliveries_log:
                with open(self.deliveries_log, "a") as log:
                    log.write(f"{os.getpid()} {len(texts)}\n")
            time.sleep(self.delay_seconds)
            if not self.kill:
                raise WorkerKilled(f"killed while embedding {len(texts)} object(s)")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().embed(texts=texts, images=images)
