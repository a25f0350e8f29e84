"""A task that does nothing but count itself: django-q2's own cost per task."""

import redis

COUNTER = "bench:noop"


def tick() -> None:
    redis.Redis.from_url("redis://127.0.0.1:6379/7").incr(COUNTER)
