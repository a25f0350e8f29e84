"""Reusable DRF pieces: error bodies, image validation, pagination, throttling, the
moderator permission, the moderation state of an object, and the moderator queue."""
