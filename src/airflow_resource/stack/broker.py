"""The Celery broker (Redis) as the resource reads it: the length of Airflow's task queues."""

from __future__ import annotations

from typing import Any

CELERY_QUEUES = ("default",)          # Airflow's [operators] default_queue
KOMBU_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's Redis priority lists


def queue_lengths(client: Any, queues: tuple[str, ...] = CELERY_QUEUES) -> dict[str, int]:
    """Messages waiting per Celery queue: the sum of the queue's Redis lists (one per kombu priority)."""
    return {q: int(sum(client.llen(q + s) for s in KOMBU_PRIORITY_SUFFIXES)) for q in queues}
