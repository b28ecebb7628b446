"""Layers a CI job adds to an image: a directory packed as a reproducible gzip tarball, or a ready tar.gz.

Reproducible means the same directory content gives the same bytes, hence the same ``gzipDigest`` and
``tarDigest``, on every run and machine with the same zlib: entries sorted by path, mtimes 0, owners 0:0 with
no names, modes kept, no gzip file name and a gzip header mtime of 0. Identical digests let wave (and the
registry clients pulling from it) reuse what they already have.
"""

from __future__ import annotations

import base64
import gzip
import io
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from wave.oci.digest import sha256_digest

GZIP_LEVEL = 6  # fixed: the compressed bytes (and so gzipDigest) depend on it


class LayerError(ValueError):
    """A layer cannot be made from what the user named; the message says why."""


@dataclass(frozen=True)
class PackedLayer:
    """A gzip-compressed layer tarball with the digests a container request carries."""

    data: bytes
    gzip_digest: str
    tar_digest: str

    @property
    def gzip_size(self) -> int:
        return len(self.data)

    def to_json(self) -> dict[str, object]:
        """The layer as ``containerConfig.layers[]`` takes it, sent inline."""
        return {
            "location": "data:" + base64.b64encode(self.data).decode("ascii"),
            "gzipDigest": self.gzip_digest,
            "gzipSize": self.gzip_size,
            "tarDigest": self.tar_digest,
        }


def _entries(root: Path) -> list[Path]:
    """Every path under root (not root itself), sorted by its relative POSIX path; symlinks not followed."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        found.extend(base / name for name in (*dirnames, *filenames))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _tar_info(path: Path, name: str) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    else:
        raise LayerError(f"{path} is neither a file, a directory nor a symbolic link: it cannot go in a layer")
    return info


def tar_directory(root: Path) -> bytes:
    """The uncompressed tarball of root's content, placed at ``/`` of the image (root itself is not an entry,
    so the image's ``/`` keeps its own mode)."""
    if not root.is_dir():
        raise LayerError(f"{root} is not a directory")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _entries(root):
            info = _tar_info(path, path.relative_to(root).as_posix())
            if info.type == tarfile.REGTYPE:
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return out.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip without a file name and with mtime 0 in its header: the same input gives the same bytes."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def pack_directory(root: Path) -> PackedLayer:
    tar = tar_directory(root)
    data = gzip_bytes(tar)
    return PackedLayer(data, sha256_digest(data), sha256_digest(tar))


def read_tarball(path: Path) -> PackedLayer:
    """A ``.tar.gz`` made elsewhere, sent as it is; its tarDigest is that of the decompressed bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LayerError(f"cannot read {path}: {exc.strerror}") from None
    try:
        tar = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        raise LayerError(f"{path} is not a gzip file (a layer is a .tar.gz, or a directory)") from None
    return PackedLayer(data, sha256_digest(data), sha256_digest(tar))


def layer_from(argument: str) -> PackedLayer:
    """``--layer DIR`` or ``--layer FILE.tar.gz``."""
    path = Path(argument)
    if path.is_dir():
        return pack_directory(path)
    if path.is_file():
        return read_tarball(path)
    raise LayerError(f"--layer {argument}: no such directory or file")
