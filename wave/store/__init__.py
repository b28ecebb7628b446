"""Shared state: a small key-value protocol with two backends (embedded SQLite, Redis).

The typed stores (tokens, object cache, builds, metrics) are written once on top of :class:`KeyValueStore`,
so a behaviour cannot differ between backends.
"""

from wave.store.base import KeyValueStore, open_store, opened_store
from wave.store.writes import HIncr, Incr, Put, Write

__all__ = ["HIncr", "Incr", "KeyValueStore", "Put", "Write", "open_store", "opened_store"]
