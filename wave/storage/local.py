"""Object storage in a local directory: the default, for a laptop or a single replica with a volume."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from wave.errors import Unavailable
from wave.storage.base import check_key


class LocalStorage:
    """Each key is a file under ``root``. Puts write a temporary file in the same directory and rename it, so
    a reader never sees half an object; appends use ``O_APPEND``, so a growing log is always a prefix of the
    final one. Blocking file I/O runs in a worker thread, never on the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _unavailable(self, action: str, key: str, exc: OSError) -> Unavailable:
        reason = exc.strerror or type(exc).__name__
        return Unavailable(f"object storage directory {self.root}: cannot {action} {key!r}: {reason}")

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(_write_atomic, path, data)
        except OSError as exc:
            raise self._unavailable("write", key, exc) from None

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._unavailable("read", key, exc) from None

    async def append(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(_append, path, data)
        except OSError as exc:
            raise self._unavailable("append to", key, exc) from None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except NotADirectoryError:
            return
        except OSError as exc:
            raise self._unavailable("delete", key, exc) from None

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def ping(self) -> None:
        try:
            await asyncio.to_thread(_check_writable, self.root)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise Unavailable(f"object storage directory {self.root} is not usable: {reason}") from None

    async def close(self) -> None:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(data)


def _check_writable(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK | os.X_OK):
        raise PermissionError(13, "Permission denied", str(root))
