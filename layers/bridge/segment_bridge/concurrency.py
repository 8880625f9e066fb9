"""Work in flight together, on a pool made on first use (never at import), judged only once all of it
has finished: nothing is still writing when the caller hears of the first error.

    each_at_once  callables run together on a pool, their results in order
    pool_of       a named pool of N threads, made on its first use (never at import) and the same one
                  after, for every caller of the name"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def pool_of(name: str, threads: int) -> Callable[[], ThreadPoolExecutor]:
    """The pool named `name` (`threads` workers), made on first use and shared by every caller of the
    name in the process: what `each_at_once` takes. A warm Lambda container keeps it between
    invocations."""

    def made() -> ThreadPoolExecutor:
        with _pools_lock:
            if name not in _pools:
                _pools[name] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
            return _pools[name]

    return made


def each_at_once(work: list[Callable[[], T]], pool: Callable[[], ThreadPoolExecutor]) -> list[T]:
    """Run every callable on `pool()` (one callable: in this thread); their results in order. Waits for
    all of them before raising the first one's error. Nested work needs a pool of its own: a pool whose
    workers wait on work queued behind them never finishes."""
    if len(work) <= 1:
        return [job() for job in work]
    futures: list[Future[T]] = [pool().submit(job) for job in work]
    wait(futures)
    return [future.result() for future in futures]
