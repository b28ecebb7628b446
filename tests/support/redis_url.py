"""Where the tests find Redis: the machine's own at 127.0.0.1:6379 unless ``WAVE_TEST_REDIS`` names another
server (``redis://127.0.0.1:6390``), so two checkouts can run their suites at once without flushing each
other's databases."""

from __future__ import annotations

import os

SERVER = os.environ.get("WAVE_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")


def database(number: int) -> str:
    return f"{SERVER}/{number}"
