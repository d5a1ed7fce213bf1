"""PUBACKs reach the sync worker in batches, and never wait while the window runs dry."""

from __future__ import annotations

from agent.sync.link import LinkSignal
from agent.sync.pubacks import PubackBatcher


def puback(mid: int) -> LinkSignal:
    return LinkSignal("puback", 1, mid=mid, ok=True)


def test_pubacks_wake_the_worker_once_per_batch_and_are_all_handed_over() -> None:
    wakes: list[int] = []
    batcher = PubackBatcher(lambda: wakes.append(1), every=4)
    batcher.sent(10)
    for mid in range(1, 4):
        batcher.add(puback(mid))
    assert wakes == []  # three of ten in flight came back: not worth a wake-up yet
    batcher.add(puback(4))
    batcher.add(puback(5))  # a wake-up is already queued: not a second one
    assert wakes == [1]
    assert [s.mid for s in batcher.take()] == [1, 2, 3, 4, 5]
    assert batcher.take() == []


def test_the_last_pubacks_of_a_backlog_wake_the_worker_at_once() -> None:
    wakes: list[int] = []
    batcher = PubackBatcher(lambda: wakes.append(1), every=25)
    batcher.sent(3)
    batcher.add(puback(1))
    batcher.add(puback(2))
    assert wakes == []
    batcher.add(puback(3))  # nothing left in flight: the worker must refill or flush now
    assert wakes == [1]
    assert [s.mid for s in batcher.take()] == [1, 2, 3]


def test_a_new_connection_forgets_the_old_counts() -> None:
    wakes: list[int] = []
    batcher = PubackBatcher(lambda: wakes.append(1), every=5)
    batcher.sent(8)
    batcher.add(puback(1))
    batcher.reset(every=2)
    assert batcher.take() == []  # the old link's PUBACKs are stale
    batcher.sent(4)
    batcher.add(puback(1))
    assert wakes == []
    batcher.add(puback(2))
    assert wakes == [1]
