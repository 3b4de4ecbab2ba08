"""Bounded hand-offs between pipeline threads.

``NewestSlot`` holds one item; a newer put replaces (drops) the older one. It is how live
frames and live speech stay current: when the consumer is slow, stale items are dropped,
never queued. Files use ``BlockingSlot`` (a bounded queue) so every item is processed, the
producer waiting instead of memory growing.
"""

from __future__ import annotations

import queue
import threading

CLOSED = object()  # returned by get() once the producer has closed and nothing is left


class NewestSlot:
    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._has_item = False
        self._closed = False
        self.dropped = 0

    def put(self, item, stop: threading.Event | None = None) -> bool:
        with self._cond:
            if self._has_item:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._cond.notify_all()
        return True

    def get(self, timeout: float | None = None):
        """The newest item, CLOSED after close(), or None on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout):
                return None
            if not self._has_item:
                return CLOSED
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self, stop: threading.Event | None = None) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return int(self._has_item)


class BlockingSlot:
    """A bounded FIFO: put() waits while full (backpressure), items are never dropped."""

    def __init__(self, size: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self.dropped = 0

    def put(self, item, stop: threading.Event | None = None) -> bool:
        """False if ``stop`` was set while waiting for room."""
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if stop is not None and stop.is_set():
                    return False

    def get(self, timeout: float | None = None):
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, stop: threading.Event | None = None) -> None:
        self.put(CLOSED, stop)

    def __len__(self) -> int:
        return self._queue.qsize()
