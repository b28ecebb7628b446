#!/usr/bin/env bash
# make-images.sh — build small, REAL, reproducible container images from Debian
# packages only (no internet, no Docker daemon) and push them to a local
# registry (see start-registry.sh).
#
# Copied from the wave lab (shared/lab/make-images.sh) into the repository so the
# tests do not depend on anything outside it at run time. Adapted for the tests:
#   * building and pushing are separate steps (BUILD_ONLY=1 / PUSH_ONLY=1), so one
#     layout built once per test session is pushed into several registries;
#   * only the script's own outputs under $WORK are removed (never $WORK itself);
#   * PREFIX puts every repository under a prefix; private/busybox:latest is pushed
#     too (denied to anonymous users by token-server.py);
#   * digests come from `skopeo copy --digestfile` (no extra registry round trip).
#
#   REGISTRY=127.0.0.1:5000 ./make-images.sh          # build + push small images (~1 MB)
#   BIG=1 ./make-images.sh                            # + library/big:latest (200 MB layer)
#   WORK=/tmp/x BUILD_ONLY=1 ./make-images.sh         # only build the OCI layout $WORK/oci
#   LAYOUT=/tmp/x/oci PUSH_ONLY=1 REGISTRY=... ./make-images.sh   # only push a built layout
#
# Pushed (REGISTRY defaults to 127.0.0.1:5000):
#   library/busybox:latest      Docker schema2 manifest, linux/amd64, 2 layers
#   library/busybox:oci         OCI image manifest, same content as :latest
#   library/busybox:multi-oci   OCI image index   -> linux/amd64 + linux/arm64
#   library/busybox:multi-v2s2  Docker manifest list -> linux/amd64 + linux/arm64
#   lab/nested/busybox:latest   = busybox:latest under a 3-segment repository name
#   private/busybox:latest      = busybox:latest, in a repository token-server.py keeps private
#   library/big:latest          (BIG=1 at build time) Docker schema2, amd64, busybox + BIG_MB MB
#                               incompressible layer (for throughput tests)
# The amd64 image runs (static busybox; /bin/sh etc.); the arm64 one only holds
# marker files. Every image has /etc/wave-lab-arch = its architecture.
#
# Reproducible: file mtimes, created dates and content are fixed, so the same
# Debian package versions give the same digests on every machine; re-running
# is cheap (skopeo skips blobs the registry already has) and idempotent.
# A digest list ("REFERENCE DIGEST MEDIATYPE" lines) is written to $DIGESTS
# (default $WORK/images.txt).
#
# Settings: REGISTRY, WORK (default /tmp/wave-lab/images), LAYOUT (default $WORK/oci),
#           BIG=0|1, BIG_MB=200, PREFIX (repository prefix, e.g. "mirror/"),
#           REG_CREDS=user:pass (registry with basic or Bearer-token auth),
#           BUILD_ONLY=1 | PUSH_ONLY=1, DIGESTS=file.
# Needs:    apt-get install -y umoci skopeo jq busybox-static openssl
set -euo pipefail

REGISTRY="${REGISTRY:-127.0.0.1:5000}"
WORK="${WORK:-/tmp/wave-lab/images}"
LAYOUT="${LAYOUT:-$WORK/oci}"   # OCI image layout holding every image (rebuilt by each build)
BIG="${BIG:-0}"
BIG_MB="${BIG_MB:-200}"
PREFIX="${PREFIX:-}"
BUILD_ONLY="${BUILD_ONLY:-0}"
PUSH_ONLY="${PUSH_ONLY:-0}"
DIGESTS="${DIGESTS:-$WORK/images.txt}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"   # from Debian package busybox-static
EPOCH=1970-01-01T00:00:00Z           # fixed timestamps => reproducible digests

if [ "$BUILD_ONLY" = 1 ] && [ "$PUSH_ONLY" = 1 ]; then
  echo "BUILD_ONLY and PUSH_ONLY exclude each other" >&2; exit 2
fi
case "$WORK" in /|/tmp|"") echo "refusing WORK=$WORK" >&2; exit 2 ;; esac

need() {
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y umoci skopeo jq openssl)" >&2; exit 1; }
  done
}

# desc TAG: descriptor (digest/size/mediaType) that index.json holds for TAG
desc() { jq -c --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$t)' "$LAYOUT/index.json"; }

build() {
  need umoci jq openssl sha256sum
  # The dynamic `busybox` package also installs /bin/busybox: insist on the static one.
  if ! [ -x "$BUSYBOX" ] || ldd "$BUSYBOX" >/dev/null 2>&1; then
    echo "need a static busybox at $BUSYBOX (apt-get install -y busybox-static)" >&2; exit 1
  fi
  # non-root: umoci insert needs --rootless (maps file owners to root in the layer)
  local umoci_flags=(); [ "$(id -u)" = 0 ] || umoci_flags=(--rootless)
  local scratch="$WORK/build"
  rm -rf "$LAYOUT" "$scratch"; mkdir -p "$WORK" "$scratch"

  # make_tree DIR ARCH: minimal files common to all images
  make_tree() {
    mkdir -p "$1/etc" "$1/tmp" "$1/root"
    chmod 1777 "$1/tmp"
    echo "$2" > "$1/etc/wave-lab-arch"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$1/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$1/etc/group"
  }
  # fix_times DIR: zero mtimes so the layer tarball is byte-for-byte reproducible
  fix_times() { find "$1" -exec touch -h -d @0 {} +; }
  # add_layer TAG DIR: add DIR's content as one new layer at / of image TAG
  add_layer() {
    fix_times "$2"
    umoci insert "${umoci_flags[@]}" --image "$LAYOUT:$1" --history.created "$EPOCH" \
      --history.created_by "wave-lab: add $(basename "$2")" "$2" /
  }
  # set_config TAG ARCH: image config (env/cmd/labels/platform)
  set_config() {
    umoci config --image "$LAYOUT:$1" --created "$EPOCH" --history.created "$EPOCH" \
      --architecture "$2" --os linux \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --config.cmd sh --config.workingdir / \
      --config.label org.opencontainers.image.title=wave-lab-busybox \
      --config.label org.opencontainers.image.source=wave-lab
  }
  # blob_put FILE: store FILE as a blob of the layout, print "sha256:<hex> <size>"
  blob_put() {
    local d; d=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$LAYOUT/blobs/sha256/$d"
    echo "sha256:$d $(stat -c %s "$1")"
  }

  echo "== building OCI layout in $LAYOUT"
  umoci init --layout "$LAYOUT"

  # --- linux/amd64: layer 1 = static busybox + applet symlinks, layer 2 = small files
  umoci new --image "$LAYOUT:amd64"
  # the directory names become the layers' history ("wave-lab: add rootfs-busybox"): keep them
  local bb="$scratch/rootfs-busybox"; mkdir -p "$bb/bin"
  cp "$BUSYBOX" "$bb/bin/busybox"
  for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -s busybox "$bb/bin/$a"; done
  add_layer amd64 "$bb"
  local etc="$scratch/rootfs-etc-amd64"; make_tree "$etc" amd64
  echo "hello from wave-lab busybox (amd64)" > "$etc/hello.txt"
  add_layer amd64 "$etc"
  set_config amd64 amd64

  # --- linux/arm64: a different tiny layer (marker files only, not runnable)
  umoci new --image "$LAYOUT:arm64"
  local arm="$scratch/rootfs-arm64"; make_tree "$arm" arm64
  echo "hello from wave-lab busybox (arm64 placeholder)" > "$arm/hello.txt"
  add_layer arm64 "$arm"
  set_config arm64 arm64

  # --- big: busybox image + one incompressible layer of BIG_MB MB (deterministic
  #     pseudo-random bytes: AES-CTR keystream, so the digest is reproducible too)
  if [ "$BIG" = 1 ]; then
    umoci config --image "$LAYOUT:amd64" --tag big --no-history
    local bigdir="$scratch/rootfs-big"; mkdir -p "$bigdir/data"
    # (process substitution, not a pipe: openssl dies of SIGPIPE, which pipefail would catch)
    head -c "$((BIG_MB * 1024 * 1024))" \
      < <(openssl enc -aes-256-ctr -pass pass:wave-lab -nosalt -pbkdf2 -in /dev/zero 2>/dev/null) \
      > "$bigdir/data/random.bin"
    add_layer big "$bigdir"
  fi
  umoci gc --layout "$LAYOUT"

  # --- multi-arch OCI image index (hand-written: umoci makes single manifests only)
  local amd armd idx_digest idx_size
  amd=$(desc amd64); armd=$(desc arm64)
  jq -n --argjson a "$amd" --argjson r "$armd" '{
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
      ($a | del(.annotations) + {platform: {architecture: "amd64", os: "linux"}}),
      ($r | del(.annotations) + {platform: {architecture: "arm64", os: "linux"}})
    ]}' > "$scratch/index-multi.json"
  read -r idx_digest idx_size < <(blob_put "$scratch/index-multi.json")
  jq --arg d "$idx_digest" --argjson s "$idx_size" '.manifests += [{
      mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
      annotations: {"org.opencontainers.image.ref.name": "multi"}}]' \
    "$LAYOUT/index.json" > "$scratch/index.json.new"
  mv "$scratch/index.json.new" "$LAYOUT/index.json"
  rm -rf "$scratch"
  echo "== built $LAYOUT"
}

# --- push. skopeo converts media types on the fly (--format v2s2 = Docker schema2).
push_all() {
  need skopeo jq
  [ -f "$LAYOUT/index.json" ] || { echo "no OCI layout at $LAYOUT (build it first)" >&2; exit 1; }
  local dest=(--dest-tls-verify=false); [ -n "${REG_CREDS:-}" ] && dest+=(--dest-creds "$REG_CREDS")
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/make-images.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  local docker_m=application/vnd.docker.distribution.manifest.v2+json
  local docker_l=application/vnd.docker.distribution.manifest.list.v2+json
  local oci_m=application/vnd.oci.image.manifest.v1+json
  local oci_i=application/vnd.oci.image.index.v1+json
  : > "$tmp/record"
  # push SRC_TAG DEST_REF MEDIATYPE [skopeo copy flags...]
  push() {
    local src=$1 dst=$PREFIX$2 mt=$3; shift 3
    echo "== push $src -> $REGISTRY/$dst $*"
    skopeo copy -q "${dest[@]}" --digestfile "$tmp/digest" "$@" "oci:$LAYOUT:$src" "docker://$REGISTRY/$dst"
    printf '%-28s %-71s %s\n' "$dst" "$(cat "$tmp/digest")" "$mt" >> "$tmp/record"
  }
  push amd64 library/busybox:latest     "$docker_m" --format v2s2
  push amd64 library/busybox:oci        "$oci_m"    --format oci
  push multi library/busybox:multi-oci  "$oci_i"    --all --format oci
  push multi library/busybox:multi-v2s2 "$docker_l" --all --format v2s2
  push amd64 lab/nested/busybox:latest  "$docker_m" --format v2s2
  push amd64 private/busybox:latest     "$docker_m" --format v2s2
  # big is pushed whenever the layout was built with BIG=1
  if [ -n "$(desc big)" ]; then push big library/big:latest "$docker_m" --format v2s2; fi
  mkdir -p "$(dirname "$DIGESTS")"
  { printf '%-28s %-71s %s\n' REFERENCE DIGEST MEDIATYPE; cat "$tmp/record"; } > "$DIGESTS"
  cat "$DIGESTS"
}

if [ "$PUSH_ONLY" != 1 ]; then build; fi
if [ "$BUILD_ONLY" != 1 ]; then push_all; fi
