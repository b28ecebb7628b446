"""Thin wrappers around real container clients (skopeo, podman, containerd's ctr) over plain http.

Why: wave must work with the clients people actually use, and each sends different requests (podman and
skopeo GET the tag; containerd HEADs the tag and GETs by digest and never calls /v2/ first). These wrappers
only build the command lines that work on this machine (root, vfs storage, no systemd) and keep all client
state under a test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.registry import START_TIMEOUT, ManagedProcess

PODMAN_RUNROOT_MAX = 50  # podman's own limit
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; ".ttrpc" is appended to the socket path

# Debian package providing each tool, for skip messages.
TOOL_PACKAGES: dict[str, str] = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "jq": "jq",
    "openssl": "openssl",
    "htpasswd": "apache2-utils",
    "podman": "podman",
    "conmon": "conmon",
    "runc": "runc",
    "buildah": "buildah",
    "containerd": "containerd",
    "ctr": "containerd",
}


def have(tool: str) -> bool:
    """True when tool is on PATH."""
    return shutil.which(tool) is not None


def missing_tools(*tools: str) -> str | None:
    """A skip reason naming the missing tools and their Debian packages, or None when all are there."""
    gone = [t for t in tools if not have(t)]
    if not gone:
        return None
    pkgs = sorted({TOOL_PACKAGES.get(t, t) for t in gone})
    return f"{', '.join(gone)} not installed (apt-get install {' '.join(pkgs)})"


class ClientError(subprocess.CalledProcessError):
    """A client command failed; str() shows the command and its stderr (CalledProcessError hides it)."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{self.stderr}\nstdout:\n{str(self.stdout)[-2000:]}"


def run_client(
    cmd: Sequence[str], *, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a client to completion, capturing text output; raise ClientError on failure if check."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise ClientError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def _docker_ref(ref: str) -> str:
    """'HOST/NAME:TAG' -> 'docker://HOST/NAME:TAG'; refs with a transport are kept."""
    return ref if "://" in ref else f"docker://{ref}"


def skopeo_copy(
    src_ref: str,
    dest_dir: Path | str,
    *,
    all: bool = False,
    override_arch: str | None = None,
    creds: str | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """`skopeo copy` a plain-http image (HOST/NAME:TAG) into a `dir:` layout."""
    cmd = ["skopeo"]
    if override_arch:
        cmd += ["--override-arch", override_arch]
    cmd += ["copy", "-q", "--src-tls-verify=false"]
    if all:
        cmd.append("--all")
    if creds:
        cmd += ["--src-creds", creds]
    cmd += [_docker_ref(src_ref), f"dir:{dest_dir}"]
    return run_client(cmd, check=check, timeout=timeout)


def skopeo_inspect(
    ref: str, *, config: bool = False, raw: bool = False, creds: str | None = None, timeout: float = 60
) -> Any:
    """`skopeo inspect` a plain-http image; returns the parsed JSON (raises ClientError on failure)."""
    cmd = ["skopeo", "inspect", "--tls-verify=false"]
    if config:
        cmd.append("--config")
    if raw:
        cmd.append("--raw")
    if creds:
        cmd += ["--creds", creds]
    cmd.append(_docker_ref(ref))
    return json.loads(run_client(cmd, timeout=timeout).stdout)


class Podman:
    """podman with private storage under base (vfs, cgroupfs, file events: what works here as root)."""

    def __init__(self, base: Path | str, runtime: str = "runc") -> None:
        self.base = Path(base).resolve()
        self.root = self.base / "root"
        self.tmpdir = self.base / "tmp"
        # podman refuses a runroot longer than 50 characters (conmon's socket paths): pytest's tmp_path
        # usually is, so the runroot (small: locks, sockets, container state) goes to a short dir.
        self._short: Path | None = None
        self.runroot = self.base / "run"
        if len(str(self.runroot)) > PODMAN_RUNROOT_MAX:
            self._short = Path(tempfile.mkdtemp(prefix="podman-"))
            self.runroot = self._short / "run"
        for d in (self.root, self.runroot, self.tmpdir):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime = runtime
        # big-file temp data (layer downloads) goes under base, not /var/tmp
        self.env = {**os.environ, "TMPDIR": str(self.tmpdir)}

    def args(self) -> list[str]:
        """podman's global options for this private storage."""
        return [
            "podman", "--root", str(self.root), "--runroot", str(self.runroot),
            "--tmpdir", str(self.tmpdir / "libpod"), "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", self.runtime,
        ]  # fmt: skip

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Any podman subcommand with this storage."""
        return run_client([*self.args(), *args], check=check, timeout=timeout, env=self.env)

    def pull(self, ref: str, *, creds: str | None = None) -> str:
        """Pull over plain http; returns podman's stdout (the image ID)."""
        extra = ["--creds", creds] if creds else []
        return self("pull", "-q", "--tls-verify=false", *extra, ref).stdout

    def run(self, ref: str, *cmd: str) -> str:
        """Run cmd in a throwaway container (no network, bounded ulimits); returns its stdout."""
        return self(
            "run", "--rm", "--tls-verify=false", "--network", "none",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", ref, *cmd,
        ).stdout  # fmt: skip

    def image_digests(self) -> list[str]:
        """Manifest digests of the images in this storage."""
        out = self("images", "--format", "{{.Digest}}").stdout
        return [line for line in out.split() if line]

    def cleanup(self) -> None:
        """Remove leftover containers (no shm mount may stay behind) and the short runroot dir."""
        self("rm", "-af", check=False, timeout=60)
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)
            self._short = None


class Containerd:
    """A private containerd on a unix socket under base (no CRI, no TCP), driven with `ctr`."""

    def __init__(self, base: Path | str, snapshotter: str = "native") -> None:
        self.base = Path(base).resolve()
        self.socket = self.base / "containerd.sock"
        self._sockdir: Path | None = None
        if len(str(self.socket)) > SOCKET_PATH_MAX:  # long pytest tmp_path: sockets go to a short dir
            self._sockdir = Path(tempfile.mkdtemp(prefix="ctrd-"))
            self.socket = self._sockdir / "containerd.sock"
        self.snapshotter = snapshotter  # native: works on any filesystem, no overlay mounts left behind
        self._proc: ManagedProcess | None = None

    @staticmethod
    def available() -> bool:
        """True when containerd and ctr are installed (Debian package containerd)."""
        return have("containerd") and have("ctr")

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Any ctr subcommand against this containerd."""
        return run_client(["ctr", "--address", str(self.socket), *args], check=check, timeout=timeout)

    def start(self) -> Containerd:
        """Start containerd and wait (bounded) until `ctr version` answers."""
        self.base.mkdir(parents=True, exist_ok=True)
        conf = self.base / "config.toml"
        conf.write_text(
            "\n".join([
                "version = 2",
                f"root = {json.dumps(str(self.base / 'root'))}",
                f"state = {json.dumps(str(self.base / 'state'))}",
                # CRI would open a TCP stream server and needs CNI
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
                "[grpc]",
                f"  address = {json.dumps(str(self.socket))}",
                "[ttrpc]",
                f"  address = {json.dumps(str(self.socket) + '.ttrpc')}",
                "[debug]",
                f"  address = {json.dumps(str(self.socket.parent / 'debug.sock'))}",
                '[plugins."io.containerd.internal.v1.opt"]',  # default /opt/containerd
                f"  path = {json.dumps(str(self.base / 'opt'))}",
            ]) + "\n"
        )  # fmt: skip
        self._proc = ManagedProcess(
            "containerd", ["containerd", "--config", str(conf)], self.base / "containerd.log", self.base
        )
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if not self._proc.alive():
                    raise RuntimeError(f"containerd exited:\n{self._proc.tail()}")
                if self.socket.exists() and self.ctr("version", check=False, timeout=5).returncode == 0:
                    return self
                if time.monotonic() > deadline:
                    raise RuntimeError(f"containerd not up within {START_TIMEOUT:.0f}s:\n{self._proc.tail()}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def pull(
        self,
        ref: str,
        *,
        creds: str | None = None,
        platform: str | None = None,
        all_platforms: bool = False,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """`ctr images pull --plain-http` (unpacked with the native snapshotter)."""
        args = ["images", "pull", "--plain-http", "--snapshotter", self.snapshotter]
        if creds:
            args += ["--user", creds]
        if platform:
            args += ["--platform", platform]
        if all_platforms:
            args.append("--all-platforms")
        return self.ctr(*args, ref, check=check)

    def images(self) -> dict[str, str]:
        """ref -> manifest digest of the images this containerd holds."""
        out = self.ctr("images", "ls").stdout.splitlines()[1:]
        return {cols[0]: cols[2] for cols in (line.split() for line in out) if len(cols) >= 3}

    def stop(self) -> None:
        """Terminate containerd (kill after a bounded wait); idempotent."""
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Dockerd:
    """A private dockerd on a unix socket (no bridge, no iptables, vfs storage), driven with `docker`."""

    def __init__(self, base: Path | str) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="dockerd-", dir=str(base)))
        self.socket = Path(tempfile.mkdtemp(prefix="dkr-")) / "docker.sock"  # unix socket paths are short
        self._proc: ManagedProcess | None = None

    @staticmethod
    def available() -> bool:
        """True when dockerd and the docker CLI are installed (Debian package docker.io)."""
        return have("dockerd") and have("docker")

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.base / "cli")}
        return run_client(["docker", *args], check=check, timeout=timeout, env=env)

    def start(self) -> Dockerd:
        (self.base / "daemon.json").write_text("{}")  # keep /etc/docker/daemon.json out of it
        argv = ["dockerd", "--config-file", str(self.base / "daemon.json"), "-H", f"unix://{self.socket}",
                "--data-root", str(self.base / "root"), "--exec-root", str(self.socket.parent / "exec"),
                "--pidfile", str(self.base / "dockerd.pid"), "--iptables=false", "--ip6tables=false",
                "--ip-masq=false", "--bridge=none", "--userland-proxy=false", "--storage-driver=vfs"]
        self._proc = ManagedProcess("dockerd", argv, self.base / "dockerd.log", self.base)
        deadline = time.monotonic() + 60
        try:
            while self.docker("version", check=False, timeout=10).returncode != 0:
                if not self._proc.alive():
                    raise RuntimeError(f"dockerd exited:\n{self._proc.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dockerd not up within 60s:\n{self._proc.tail()}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def pull(self, ref: str) -> str:
        return self.docker("pull", "-q", ref).stdout.strip()

    def run(self, ref: str, *cmd: str) -> str:
        return self.docker("run", "--rm", "--network", "none", ref, *cmd).stdout

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        root = self.base / "root"
        if root.exists():  # dockerd bind-mounts its data root on itself
            subprocess.run(["umount", str(root)], check=False, capture_output=True)
        shutil.rmtree(self.socket.parent, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
