"""``make lab``: a local registry on loopback with the demo images, for trying wave from a fresh clone.

The registry is Debian's ``docker-registry`` and the images are the ones the tests use
(``lab/make-images.sh``: reproducible busybox images built from Debian packages, no network). It runs in
the background until ``make lab-stop``; its state lives in ``$LAB_DIR`` (default ``/tmp/wave-lab-$USER``).

    python -m tests.support.labctl start|stop|status      # LAB_PORT (default 5000), LAB_DIR
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.clients import missing_tools
from tests.support.images import LAB_IMAGES, build_lab_layout, push_lab_images, static_busybox_missing
from tests.support.registry import START_TIMEOUT, _write_config, http_request

DEFAULT_PORT = 5000
KINDS = {
    "application/vnd.docker.distribution.manifest.v2+json": "Docker manifest, linux/amd64, runs",
    "application/vnd.oci.image.manifest.v1+json": "OCI manifest, linux/amd64, runs",
    "application/vnd.oci.image.index.v1+json": "OCI index: linux/amd64 + linux/arm64",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker manifest list: linux/amd64 + linux/arm64",
}
SHOWN = ("library/busybox:latest", "library/busybox:oci", "library/busybox:multi-oci",
         "library/busybox:multi-v2s2", "lab/nested/busybox:latest")


class LabError(RuntimeError):
    pass


def lab_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"wave-lab-{getpass.getuser()}"
    return Path(os.environ.get("LAB_DIR") or default).resolve()


def lab_port() -> int:
    text = os.environ.get("LAB_PORT") or str(DEFAULT_PORT)
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise LabError(f"LAB_PORT must be a TCP port, not {text!r}")
    return int(text)


def _pid(workdir: Path) -> int | None:
    try:
        pid = int((workdir / "registry.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _answers(host: str) -> bool:
    try:
        return http_request("GET", f"http://{host}/v2/", timeout=1.0).status in (200, 401)
    except OSError:
        return False


def start(workdir: Path, port: int) -> str:
    host = f"127.0.0.1:{port}"
    if _pid(workdir) is not None and _answers(host):
        return host
    missing = missing_tools("docker-registry", "skopeo", "umoci", "jq", "openssl") or static_busybox_missing()
    if missing:
        raise LabError(missing)
    if _answers(host):
        raise LabError(f"something else already listens on {host}: stop it, or choose another port with LAB_PORT")
    workdir.mkdir(parents=True, exist_ok=True)
    config = _write_config(workdir / "registry", port, [])
    log = workdir / "registry.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # outlives `make lab`
    (workdir / "registry.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(host):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(workdir)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            raise LabError(f"docker-registry did not start on {host}:\n{tail}")
        time.sleep(0.05)
    from tests.support.registry import Registry

    layout = build_lab_layout(workdir / "images")
    push_lab_images(layout, Registry(host=host, url=f"http://{host}"))
    return host


def stop(workdir: Path) -> bool:
    pid = _pid(workdir)
    (workdir / "registry.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def describe(host: str, workdir: Path) -> str:
    image = f"{host}/library/busybox:latest"
    lines = [f"lab registry on http://{host} (state and log in {workdir}; `make lab-stop` stops it)", "", "images:"]
    lines += [f"  {host}/{ref:<28} {KINDS[LAB_IMAGES[ref]]}" for ref in SHOWN]
    lines += [
        "",
        "try (with wave running: `make run` in another terminal):",
        f"  .venv/bin/wave request {image} --env GREETING=hello --cmd 'sh -c \"echo $GREETING\"'",
        f"  skopeo copy --src-tls-verify=false docker://$(.venv/bin/wave request {image}) "
        'dir:"${TMPDIR:-/tmp}/wave-busybox"',
        f"  .venv/bin/wave inspect {host}/library/busybox:multi-oci -o yaml",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("start", "stop", "status"), nargs="?", default="start")
    args = parser.parse_args(argv)
    workdir = lab_dir()
    try:
        port = lab_port()
        if args.action == "stop":
            print("lab registry stopped" if stop(workdir) else "lab registry was not running")
            return 0
        if args.action == "status":
            running = _pid(workdir) is not None and _answers(f"127.0.0.1:{port}")
            print(f"lab registry {'running on 127.0.0.1:' + str(port) if running else 'not running'}")
            return 0 if running else 1
        print(describe(start(workdir, port), workdir))
        return 0
    except (LabError, RuntimeError) as exc:
        print(f"make lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
