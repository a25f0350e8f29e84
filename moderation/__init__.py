"""Listing consistency moderation: CLIP embeddings, scoring and a review queue for Django."""
