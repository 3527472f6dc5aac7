"""A small process pool for per-case work (fingerprint, preprocessing), with progress callbacks."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The console's share of cores for this process (FOLDWATCH_CPU_THREADS), else up to 4."""
    env = os.environ.get("FOLDWATCH_CPU_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


def run_all(fn: Callable[[T], R], items: Iterable[T], workers: int,
            progress: Callable[[int, T, R], None] | None = None) -> list[R]:
    """fn over items (results in input order); progress(done, item, result) as each finishes."""
    items = list(items)
    results: list = [None] * len(items)
    if workers <= 1 or len(items) <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            if progress:
                progress(i + 1, item, results[i])
        return results
    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for done, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            results[i] = fut.result()
            if progress:
                progress(done, items[i], results[i])
    return results
