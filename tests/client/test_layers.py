"""``--layer DIR``: a reproducible tarball, whatever the files' times and owners, with digests wave accepts."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from wave.client.layers import LayerError, layer_from, pack_directory
from wave.oci.digest import sha256_digest
from wave.oci.layers import verify_inline_layer
from wave.oci.models import Layer


def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "file").write_text("hello from a layer\n")
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "bin" / "run.sh").chmod(0o755)
    (root / "zz-last").write_text("z")
    (root / "a-first").write_text("a")
    os.symlink("bin/run.sh", root / "run")
    return root


def test_same_directory_gives_the_same_bytes_whatever_the_times(tmp_path: Path) -> None:
    first = pack_directory(_tree(tmp_path / "one"))
    copy = tmp_path / "two"
    shutil.copytree(tmp_path / "one", copy, symlinks=True)
    for path in copy.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    second = pack_directory(copy)
    assert first == second
    assert first.gzip_digest == sha256_digest(first.data)
    assert first.tar_digest == sha256_digest(gzip.decompress(first.data))


def test_the_tarball_is_normalised(tmp_path: Path) -> None:
    packed = pack_directory(_tree(tmp_path / "d"))
    assert packed.data[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert packed.data[3] & 0x08 == 0  # no file name in the gzip header
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(packed.data))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) == ["a-first", "bin", "bin/run.sh", "file", "run", "zz-last"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in members)
    by_name = {m.name: m for m in members}
    assert by_name["bin/run.sh"].mode == 0o755
    assert by_name["run"].issym() and by_name["run"].linkname == "bin/run.sh"
    assert by_name["bin"].isdir()


def test_changed_content_changes_the_digests(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d")
    before = pack_directory(root)
    (root / "file").write_text("changed\n")
    assert pack_directory(root).tar_digest != before.tar_digest
    (root / "file").write_text("hello from a layer\n")
    (root / "file").chmod(0o600)
    assert pack_directory(root).tar_digest != before.tar_digest  # the mode is part of the layer


def test_wave_accepts_the_layer_as_sent(tmp_path: Path) -> None:
    body = pack_directory(_tree(tmp_path / "d")).to_json()
    layer = Layer(str(body["location"]), str(body["gzipDigest"]), int(str(body["gzipSize"])), str(body["tarDigest"]))
    assert verify_inline_layer(layer, 1 << 20) == pack_directory(tmp_path / "d").data


def test_a_tar_gz_file_is_sent_as_it_is(tmp_path: Path) -> None:
    packed = pack_directory(_tree(tmp_path / "d"))
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(packed.data)
    assert layer_from(str(path)) == packed
    (tmp_path / "plain.tar").write_bytes(b"not gzip")
    with pytest.raises(LayerError, match="not a gzip file"):
        layer_from(str(tmp_path / "plain.tar"))
    with pytest.raises(LayerError, match="no such directory or file"):
        layer_from(str(tmp_path / "missing"))
