"""Build logs: chunked appends to storage, bounded size with the tail kept."""

from __future__ import annotations

import pytest

from wave.builds import logs
from wave.builds.logs import BuildLog, log_key
from wave.storage.local import LocalStorage


async def test_log_is_stored_under_the_build_key_and_flushed_on_close(storage: LocalStorage) -> None:
    build_log = BuildLog(storage, "abc_1")
    for i in range(3):
        await build_log.write(f"line {i}\n")
    await build_log.close()
    assert await storage.get(log_key("abc_1")) == b"line 0\nline 1\nline 2\n"
    assert build_log.tail(2) == ["line 1", "line 2"]


async def test_oversized_log_keeps_its_head_and_its_tail(storage: LocalStorage,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_STORED_BYTES", 100)
    build_log = BuildLog(storage, "big_1")
    for i in range(50):
        await build_log.write(f"line {i:03d}")
    await build_log.close()
    text = (await storage.get(log_key("big_1")) or b"").decode()
    assert text.startswith("line 000\n") and "bytes of log omitted" in text
    assert text.endswith("line 048\nline 049\n")
