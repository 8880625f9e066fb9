"""Work in flight together, on a pool made on first use (never at import), judged only once all of it
has finished: nothing is still writing when the caller hears of the first error."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def each_at_once(work: list[Callable[[], T]], pool: Callable[[], ThreadPoolExecutor]) -> list[T]:
    """Run every callable on `pool()` (one callable: in this thread); their results in order. Waits for
    all of them before raising the first one's error. Nested work needs a pool of its own: a pool whose
    workers wait on work queued behind them never finishes."""
    if len(work) <= 1:
        return [job() for job in work]
    futures: list[Future[T]] = [pool().submit(job) for job in work]
    wait(futures)
    return [future.result() for future in futures]
