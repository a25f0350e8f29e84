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


class ClusterEmbedder(ZeroCostEmbedder):
    """For the search benchmark: "cluster N ..." embeds near the benchmark data's cluster
    N (the centres of bench/search_latency.py), so API queries are in-distribution, as a
    real model's queries are for a real catalogue."""

    model_id = "bench:zero-cost"

    def _embed_texts(self, texts):
        from bench.search_data import CLUSTERS, centres

        vectors = self._vectors(text.encode() for text in texts) * 0.02
        for row, text in enumerate(texts):
            words = text.split()
            if len(words) > 1 and words[0] == "cluster" and words[1].isdigit():
                vectors[row] += centres()[int(words[1]) % CLUSTERS]
        return vectors
