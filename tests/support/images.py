"""Real, reproducible lab images (built with umoci from Debian packages) pushed into test registries.

Why: the proxy rewrites manifests and must keep every manifest kind (Docker v2, OCI with and without a
`mediaType` field, OCI index, Docker manifest list) byte-exact where it does not rewrite. The images are
built once per session by lab/make-images.sh (BUILD_ONLY=1) and pushed into each registry
(PUSH_ONLY=1), so their digests are stable across registries and machines with the same packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.registry import Registry

MAKE_IMAGES = Path(__file__).resolve().parent / "lab" / "make-images.sh"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# Every reference push_lab_images() pushes, with the manifest media type the registry serves for it.
LAB_IMAGES: dict[str, str] = {
    "library/busybox:latest": DOCKER_MANIFEST,
    "library/busybox:oci": OCI_MANIFEST,  # its JSON has no mediaType field
    "library/busybox:multi-oci": OCI_INDEX,  # linux/amd64 + linux/arm64
    "library/busybox:multi-v2s2": DOCKER_MANIFEST_LIST,  # linux/amd64 + linux/arm64
    "lab/nested/busybox:latest": DOCKER_MANIFEST,
    "private/busybox:latest": DOCKER_MANIFEST,  # anonymous pulls denied on the bearer registry
}
LAB_REFS: tuple[str, ...] = tuple(LAB_IMAGES)
BIG_REF = "library/big:latest"  # only when the layout was built with big=True (200 MiB layer)

# Debian package that provides each tool the build/push needs (for skip messages).
IMAGE_TOOLS: dict[str, str] = {
    "umoci": "umoci",
    "skopeo": "skopeo",
    "jq": "jq",
    "openssl": "openssl",
}
STATIC_BUSYBOX = Path("/bin/busybox")


def static_busybox_missing() -> str | None:
    """Why the static busybox the images are made of is unusable, or None when it is fine."""
    if not os.access(STATIC_BUSYBOX, os.X_OK):
        return f"{STATIC_BUSYBOX} missing (apt-get install busybox-static)"
    ldd = shutil.which("ldd")
    if ldd and subprocess.run([ldd, str(STATIC_BUSYBOX)], capture_output=True).returncode == 0:
        return f"{STATIC_BUSYBOX} is dynamic (apt-get install busybox-static)"
    return None


def _run_script(env: dict[str, str], what: str, timeout: float) -> None:
    full = {**os.environ, "BIG": "0", "PREFIX": "", "REG_CREDS": "", "BUILD_ONLY": "0", "PUSH_ONLY": "0"}
    full.update(env)
    proc = subprocess.run(
        ["bash", str(MAKE_IMAGES)], env=full, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"make-images.sh ({what}) failed with {proc.returncode}:\n{proc.stderr[-3000:]}")


def build_lab_layout(workdir: Path, big: bool = False, big_mb: int = 200) -> Path:
    """Build the OCI layout with every lab image (≈0.5 s; +≈1 s with big); returns workdir/oci."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    layout = workdir / "oci"
    env = {
        "WORK": str(workdir),
        "LAYOUT": str(layout),
        "BUILD_ONLY": "1",
        "BIG": "1" if big else "0",
        "BIG_MB": str(big_mb),
    }
    _run_script(env, "build", timeout=300)
    return layout


def layout_has_big(layout: Path) -> bool:
    """True when the layout was built with big=True."""
    index = json.loads((layout / "index.json").read_text())
    names = {m.get("annotations", {}).get("org.opencontainers.image.ref.name") for m in index["manifests"]}
    return "big" in names


def push_lab_images(layout: Path, registry: Registry, prefix: str = "") -> dict[str, str]:
    """Push every lab image (LAB_REFS, + BIG_REF if built) to registry under prefix; ref -> digest.

    The digests are those skopeo pushed (sha256 of the manifest bytes the registry now serves).
    Note: with a prefix, private/busybox is no longer under private/, so the token server allows it.
    """
    with tempfile.TemporaryDirectory(prefix="wave-push-") as tmp:
        digests = Path(tmp) / "images.txt"
        env = {
            "LAYOUT": str(layout),
            "WORK": tmp,
            "PUSH_ONLY": "1",
            "REGISTRY": registry.host,
            "PREFIX": prefix,
            "REG_CREDS": registry.creds or "",
            "DIGESTS": str(digests),
            "TMPDIR": tmp,
        }
        _run_script(env, f"push to {registry.host}", timeout=600)
        out: dict[str, str] = {}
        for line in digests.read_text().splitlines()[1:]:
            ref, digest, _media_type = line.split()
            out[ref] = digest
    expected = {prefix + r for r in LAB_REFS} | ({prefix + BIG_REF} if layout_has_big(layout) else set())
    if set(out) != expected:
        raise RuntimeError(f"make-images.sh pushed {sorted(out)}, expected {sorted(expected)}")
    return out


def raw_manifest(registry: Registry, ref: str) -> bytes:
    """The manifest bytes the registry serves for ref (`name:tag` or `name@digest`), any auth."""
    cmd = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    if registry.creds:
        cmd += ["--creds", registry.creds]
    cmd.append(f"docker://{registry.host}/{ref}")
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"skopeo inspect --raw {ref} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def manifest_digest(registry: Registry, ref: str) -> str:
    """`sha256:<hex>` of the raw manifest bytes the registry serves for ref."""
    return "sha256:" + hashlib.sha256(raw_manifest(registry, ref)).hexdigest()
