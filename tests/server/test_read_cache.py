"""The node server's read cache: answers kept until the catalog changes, never a stale one."""

from __future__ import annotations

import threading

from oncofed.server.read_cache import ReadCache


def test_an_answer_is_kept_until_invalidated() -> None:
    cache = ReadCache()
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get("k", compute) == 1
    assert cache.get("k", compute) == 1
    cache.invalidate()
    assert cache.get("k", compute) == 2
    assert len(calls) == 2


def test_an_answer_computed_across_a_change_is_not_kept() -> None:
    cache = ReadCache()
    started, changed = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        changed.wait(5)
        return "before the change"

    reader = threading.Thread(target=lambda: cache.get("k", slow))
    reader.start()
    started.wait(5)
    cache.invalidate()  # the catalog changed while the read ran
    changed.set()
    reader.join(5)
    assert cache.get("k", lambda: "after the change") == "after the change"


def test_a_full_cache_starts_afresh() -> None:
    cache = ReadCache(max_entries=2)
    for key in "abc":
        cache.get(key, lambda key=key: key)
    assert cache.get("c", lambda: "recomputed") == "c"
    assert cache.get("a", lambda: "recomputed") == "recomputed"
