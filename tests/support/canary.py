"""A canary: a TCP listener on loopback that counts the connections it receives and answers none of them.

Why: a test that wave refuses an internal address must show that nothing connected, not only that the
answer was an error. :meth:`Canary.connections` first makes one connection of its own and waits until the
canary has accepted it: connections are accepted in order, so every earlier one has been counted by then —
no sleeping, and a connection wave made just before the question cannot be missed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class Canary:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._peers: list[tuple[str, int]] = []  # every connection accepted, by the peer's address
        self._probes: set[tuple[str, int]] = set()
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name=f"canary-{self.port}", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, as an image reference or a URL names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            conn.close()  # whoever connected sees the connection closed, never an answer
            with self._lock:
                self._peers.append((peer[0], peer[1]))
                self._lock.notify_all()

    def connections(self, timeout: float = 10.0) -> int:
        """How many connections reached the canary before this call (its own probe not counted)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as probe:
            name = probe.getsockname()
            me = (name[0], name[1])
        with self._lock:
            self._probes.add(me)
            if not self._lock.wait_for(lambda: me in self._peers, timeout):
                raise AssertionError("the canary did not accept its own probe")
            return len([peer for peer in self._peers if peer not in self._probes])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self._sock.close()
            self._thread.join(5)

    def __enter__(self) -> Canary:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
