"""The writing operations of the store protocol as values, for :meth:`KeyValueStore.write_all`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    ttl: float | None = None


@dataclass(frozen=True)
class Incr:
    key: str
    amount: int = 1
    ttl: float | None = None  # set when the counter is created


@dataclass(frozen=True)
class HIncr:
    key: str
    field: str
    amount: int = 1


Write = Put | Incr | HIncr  # what write_all takes: the writing operations of the protocol, as values
