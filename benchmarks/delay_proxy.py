"""A loopback TCP proxy that delays every byte by a fixed one-way time (RTT = 2x).

Used by bench_sync.py to measure the drain at a 20 ms round trip without any network.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import threading
import time


class DelayProxy:
    def __init__(self, target_port: int, one_way_s: float) -> None:
        self.target_port = target_port
        self.one_way_s = one_way_s
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, upstream)
            self._pipe(upstream, client)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        cond = threading.Condition()
        pending: list[tuple[float, int, bytes]] = []
        counter = [0]

        def reader() -> None:
            while True:
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                with cond:
                    counter[0] += 1
                    heapq.heappush(pending, (time.monotonic() + self.one_way_s, counter[0], data))
                    cond.notify()
                if not data:
                    return

        def writer() -> None:
            while True:
                with cond:
                    while not pending:
                        cond.wait()
                    due, _, data = pending[0]
                    delay = due - time.monotonic()
                    if delay > 0:
                        cond.wait(delay)
                        continue
                    heapq.heappop(pending)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()
