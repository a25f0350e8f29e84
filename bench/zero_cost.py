"""An embedder that costs nothing: random unit vectors, seeded by the input. For
measuring the pipeline's own overhead (bench/pipeline_throughput.py)."""

import hashlib

import numpy as np

from moderation.embedders import Embedder


class ZeroCostEmbedder(Embedder):
    model_id = "bench:zero-cost"
    dimensions = 512

    def _vectors(self, keys) -> np.ndarray:
        seeds = [int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") for key in keys]
        return np.stack([np.random.default_rng(seed).standard_normal(512) for seed in seeds]).astype(np.float32)

    def _embed_texts(self, texts):
        return self._vectors(text.encode() for text in texts)

    def _embed_images(self, images):
        return self._vectors(image.tobytes()[:4096] for image in images)
