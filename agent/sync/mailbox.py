"""Work for the sync worker from other threads, and a socket that wakes its network wait;
the items its loop handles.

The worker runs paho's network loop itself (``Link.pump``), so it waits in ``select``
on the broker's socket, not on a queue: whoever puts an item here also makes the
mailbox's socket readable, which ends that wait. One byte per wait, not per item: a
put only writes when the last byte was already taken. Imported by
``agent.sync.service`` only.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
from dataclasses import dataclass
from typing import Generic, TypeVar

from agent.sync.link import LinkSignal

T = TypeVar("T")


@dataclass(frozen=True)
class Wake:
    """Something changed (new events, stop): re-check instead of waiting out the poll."""


@dataclass(frozen=True)
class Outgoing:
    """A message another thread wants published (command result, resync, status)."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True)
class CentreAck:
    """The centre's ``events/ack``, read in the network loop, for the drain."""

    payload: bytes


Item = LinkSignal | Wake | Outgoing | CentreAck  # what the worker's loop handles


class Mailbox(Generic[T]):
    """A queue any thread may put on; the worker waits on ``wake_socket`` and takes."""

    def __init__(self) -> None:
        self._items: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._armed = False  # a wake-up byte is written and not yet taken
        self._reader, self._writer = self._pair()

    @staticmethod
    def _pair() -> tuple[socket.socket, socket.socket]:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        return reader, writer

    def reopen(self) -> None:
        """Fresh sockets after :meth:`close` (a restarted worker); queued items stay."""
        if self._reader.fileno() == -1:
            self._reader, self._writer = self._pair()
            self._armed = False
            with contextlib.suppress(BlockingIOError, OSError):
                self._writer.send(b"\0")  # items put while closed are taken at once

    @property
    def wake_socket(self) -> socket.socket:
        """Readable while items wait (give it to ``Link.pump`` or ``select``)."""
        return self._reader

    def put(self, item: T) -> None:
        """Any thread: queue the item, then wake the worker if it is not woken already.

        The item is queued before the flag is read, and ``take`` clears the flag before
        it empties the queue, so an item is never left behind without a byte to say so.
        """
        self._items.put(item)
        if not self._armed:
            self._armed = True
            with contextlib.suppress(BlockingIOError, OSError):  # full: a wake is pending
                self._writer.send(b"\0")

    def take(self) -> list[T]:
        """The worker: every item queued so far (empty when there is none)."""
        self._armed = False
        with contextlib.suppress(BlockingIOError, OSError):
            self._reader.recv(4096)
        items: list[T] = []
        while True:
            try:
                items.append(self._items.get_nowait())
            except queue.Empty:
                return items

    def wait(self, timeout: float) -> list[T]:
        """The worker without a connection: up to ``timeout`` for items, then take them."""
        with contextlib.suppress(OSError, ValueError):
            select.select([self._reader], [], [], max(0.0, timeout))
        return self.take()

    def close(self) -> None:
        """The worker has ended: release the two sockets (a later put only queues)."""
        self._reader.close()
        self._writer.close()
