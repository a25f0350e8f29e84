"""The app's settings: one dict, ``settings.MODERATION``, read through ``moderation_settings``.

Each key has a default here. Values are read once and cached; the cache is reset on
Django's ``setting_changed`` signal, so ``override_settings(MODERATION=...)`` works in
tests. Caches built from the settings elsewhere (the embedder, the category prompts)
reset themselves on the same signal, beside their own definitions.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # The embedder: a dotted path to a class and the keyword options it is built with.
    # See docs/embedders.md. No default model is guessed: the local ONNX backend needs
    # a model folder (or an allowed download), a hosted backend a URL.
    "EMBEDDER": {
        "BACKEND": "moderation.embedders.onnx_clip.OnnxClipEmbedder",
        "OPTIONS": {},
    },
    # The width of the vector columns. Read when models are built and fixed in the host's
    # migration; it must equal the embedder's `dimensions`. Changing it on a table that
    # holds vectors needs moderation.operations.ClearVectors (docs/storage.md).
    "DIMENSIONS": 512,
    # Untrusted photos: formats we decode, and the largest image we decode at all. The
    # pixel cap stays below Pillow's own bomb limit, so ours is the one that answers.
    "IMAGE_FORMATS": ["JPEG", "PNG", "WEBP", "GIF"],
    "IMAGE_MAX_PIXELS": 40_000_000,
    "IMAGE_MAX_BYTES": 15 * 1024 * 1024,
    # Scoring. Thresholds depend on the model: calibrate them on your own listings.
    # CONSISTENCY_MIN: flag when cosine(text, photo) is below it (ViT-B/32 CLIP pairs
    # that agree score about 0.25-0.35, unrelated ones 0.10-0.20).
    # CATEGORY_MAX_RANK: flag when the listed category is not among the photo's top N.
    # DUPLICATE_MIN_SIMILARITY: a photo vector at least this close to another seller's is
    # a candidate duplicate; PHASH_MAX_DISTANCE (bits of 64) confirms it on the pixels.
    # REPOST_MIN_TEXT_SIMILARITY: the same owner's same picture is a repost when the texts
    # are this alike (difflib's ratio, 0..1).
    # A site's THRESHOLDS is merged over these; thresholds stored in the database
    # (moderation_calibrate, the admin) win over both (docs/judgement.md).
    "THRESHOLDS": {
        "CONSISTENCY_MIN": 0.20,
        "CATEGORY_MAX_RANK": 3,
        "DUPLICATE_MIN_SIMILARITY": 0.95,
        "PHASH_MAX_DISTANCE": 6,
        "REPOST_MIN_TEXT_SIMILARITY": 0.9,
    },
    # Per-category overrides of THRESHOLDS, keyed by the category's label.
    "CATEGORY_THRESHOLDS": {},
    # Zero-shot prompts of the category check: each category's embedding is the mean of
    # every template filled with its name and with each thing its description names,
    # normalised (several prompts per class do better than one with CLIP).
    "CATEGORY_PROMPTS": ["a photo of {category}", "a product photo of {category}", "{category} for sale"],
    # Prohibited items, checked on the photo and on the text: a list of
    # {"name": ..., "prompts": [...], "threshold": cosine}; flagged `prohibited_item`
    # when either is at least as close to the mean of the concept's prompts.
    "PROHIBITED_CONCEPTS": [],
    # How much each reason weighs in the queue's order (severity = the sum).
    "REASON_SEVERITY": {
        "prohibited_item": 40,
        "resubmitted": 35,
        "duplicate_image": 30,
        "text_image_mismatch": 20,
        "repost": 15,
        "category_mismatch": 10,
    },
    "DUPLICATE_CANDIDATES": 10,
    # Search: the HNSW candidate list is max(SEARCH_EF, 4 x k). Higher finds more of the
    # true neighbours (recall) for a little more time; see docs/benchmarks.md.
    "SEARCH_EF": 160,
    # The database alias search reads from: a read replica's, so that search load stays
    # off the primary. Only reads: scoring, duplicates and decisions use the primary.
    "SEARCH_DATABASE": "default",
    # Search statements are compiled once per thread and shape and run again with each
    # query vector (moderation/statements.py). False compiles every search, as Django does.
    "REUSE_STATEMENTS": True,
    # The pipeline.
    "BATCH_SIZE": 16,
    # A task also scores other pending objects waiting for their tasks, up to
    # BATCH_SIZE in all (moderation/claims.py). False behind PgBouncer's transaction pooling.
    "COALESCE": True,
    # With COALESCE: a save queues a drain task of its model only when none is queued
    # and not yet started; that drain scores it with the others waiting
    # (moderation/drains.py). False: each save queues its own task.
    "DRAIN_SAVES": True,
    # A drain marker older than this counts as absent, so that a drain the broker lost
    # (Redis restarted without persistence) delays new saves by at most this; a drain
    # that merely waits longer in a busy queue costs one more drain task.
    "DRAIN_MARKER_SECONDS": 10,
    "MAX_ATTEMPTS": 5,
    "RETRY_BASE_DELAY_SECONDS": 30,
    "RETRY_MAX_DELAY_SECONDS": 3600,
    "ERROR_RETRY_DELAY_SECONDS": 6 * 3600,
    # The sweeper re-queues a pending object whose task seems lost after this long.
    "STALE_AFTER_SECONDS": 600,
    "SWEEP_EVERY_MINUTES": 1,
    # The sweep records when it ran (moderation/health.py): older than this while work
    # waits, the cluster runs no task (wedged) and `moderation_health` fails. Several
    # sweeps long, since the sweep waits its turn behind the tasks queued before it.
    "HEARTBEAT_MAX_AGE_SECONDS": 300,
    # The review desk (moderation/admin/). Reasons a moderator can pick for a decision,
    # besides free text; a rejection needs one or the other.
    "DECISION_REASONS": [
        "The photo does not show the item described",
        "The photo is another seller's",
        "The listing is in the wrong category",
        "The item is not allowed on this site",
    ],
    # A seller sees their object's status and a rejection's reason; True also shows them
    # the scores and the flag and error codes (which tell a fraudster what caught them).
    "SELLERS_SEE_SCORES": False,
    # A moderator who opens an object holds it this long (moderation/holds.py).
    "HOLD_SECONDS": 300,
    # A moderator may undo their last decisions this long after making them.
    "UNDO_SECONDS": 120,
}

# Keys of earlier versions: refused with their new name.
RENAMED = {
    "RETRY_BASE_DELAY": "RETRY_BASE_DELAY_SECONDS",
    "RETRY_MAX_DELAY": "RETRY_MAX_DELAY_SECONDS",
    "ERROR_RETRY_DELAY": "ERROR_RETRY_DELAY_SECONDS",
    "STALE_AFTER": "STALE_AFTER_SECONDS",
    "CATEGORY_PROMPT": "CATEGORY_PROMPTS, a list of templates",
}


class ModerationSettings:
    """Attribute access to ``settings.MODERATION`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    @property
    def _merged(self) -> dict[str, Any]:
        """Raises ``ImproperlyConfigured`` for a key that is not in ``DEFAULTS`` (an
        AttributeError here would be swallowed by ``__getattr__``, and its message lost)."""
        if self._cache is None:
            user = getattr(settings, "MODERATION", {}) or {}
            unknown = sorted(set(user) - set(DEFAULTS))
            if unknown:
                named = [f"{key} (renamed to {RENAMED[key]})" if key in RENAMED else key for key in unknown]
                raise ImproperlyConfigured(
                    f"Unknown MODERATION setting(s): {', '.join(named)}. Known settings: {', '.join(sorted(DEFAULTS))}."
                )
            self._cache = {**DEFAULTS, **user}
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._merged[name]
        except KeyError:
            raise AttributeError(f"No MODERATION setting named {name!r}.") from None

    def reload(self) -> None:
        self._cache = None


moderation_settings = ModerationSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "MODERATION":
        moderation_settings.reload()


setting_changed.connect(_reload)
