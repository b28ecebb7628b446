"""Request → build definition, checked against golden files (UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.builds.conftest import CondaOpts, Packages, SpackOpts, make_request
from wave.builds.definition import BuildDefinition, define_build
from wave.config import Settings
from wave.oci.models import ContainerConfig, Layer

GOLDEN = Path(__file__).parent / "golden"
REPO = "registry.example.com/wave/builds"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def inline_layer(files: dict[str, bytes]) -> Layer:
    blob = tar_gz(files)
    tar = gzip.decompress(blob)
    return Layer("data:" + base64.b64encode(blob).decode(), "sha256:" + hashlib.sha256(blob).hexdigest(),
                 len(blob), "sha256:" + hashlib.sha256(tar).hexdigest())


HTTP_LAYER = Layer("https://fusionfs.seqera.io/releases/v2.4-amd64.tar.gz", "sha256:" + "ab" * 32, 1234,
                   "sha256:" + "cd" * 32)
CONFIG = ContainerConfig(entrypoint=("/entry.sh",), cmd=("echo", "hello $USER"), env=("FOO=one", "BAR=a \"b\" $c"),
                         working_dir="/work dir", layers=(inline_layer({"hello.txt": b"hi\n"}), HTTP_LAYER))
SINGULARITY_DEF = "Bootstrap: docker\nFrom: ubuntu:22.04\n%post\n    echo hello > /hello.txt\n"

CASES: dict[str, dict[str, Any]] = {
    "dockerfile": dict(container_file="FROM ubuntu:22.04\nRUN echo hi > /hi.txt\n"),
    "dockerfile-arm64": dict(container_file="FROM ubuntu:22.04\nRUN echo hi > /hi.txt\n", platform="linux/arm64"),
    "conda-packages": dict(packages=Packages("CONDA", entries=("salmon=1.10.1", "bwa", "bioconda::samtools",
                                                                "pip:multiqc>=1.20"),
                                             channels=("conda-forge", "bioconda"))),
    "conda-opts": dict(packages=Packages("CONDA", entries=("numpy",), conda_opts=CondaOpts(
        mamba_image="mambaorg/micromamba:1.5.8", commands=("RUN echo extra > /extra.txt", "USER 1000"),
        base_packages="conda-forge::procps-ng numpy>=1.2"))),
    "conda-envfile": dict(packages=Packages("CONDA", env_file="dependencies:\n  - fastqc=0.12.1\n  - pip:\n"
                                            "    - requests\n", channels=("bioconda",))),
    "conda-file": dict(conda_file="name: rnaseq\nchannels:\n  - bioconda\ndependencies:\n  - star\n"),
    "spack-packages": dict(packages=Packages("SPACK", entries=("bwa@0.7.15", "salmon +mpi"))),
    "spack-file": dict(spack_file="spack:\n  specs: [samtools@1.17, bcftools]\n",
                       packages=None),
    "spack-opts": dict(packages=Packages("SPACK", entries=("hdf5",), spack_opts=SpackOpts(
        commands=("RUN echo done",), base_packages="cmake zlib"))),
    "sif-conda": dict(format="sif", freeze=True, platform="linux/arm64",
                      packages=Packages("CONDA", entries=("salmon",), channels=("conda-forge", "bioconda"))),
    "sif-spack": dict(format="sif", freeze=True, packages=Packages("SPACK", entries=("bwa@0.7.15",))),
    "sif-containerfile": dict(format="sif", freeze=True, container_file=SINGULARITY_DEF),
    "freeze-image": dict(freeze=True, container_image="docker.io/library/ubuntu:22.04", container_config=CONFIG),
    "freeze-plain": dict(freeze=True, container_image="quay.io/biocontainers/bwa:0.7.17"),
    "freeze-dockerfile": dict(freeze=True, container_file="FROM alpine:3.19\n",
                              container_config=ContainerConfig(env=("A=1",), cmd=("sh",))),
    "sif-freeze-image": dict(format="sif", freeze=True, container_image="docker.io/library/ubuntu:22.04",
                             container_config=CONFIG),
}


def golden_files(definition: BuildDefinition) -> dict[str, str]:
    files = {definition.build_file_name: definition.build_file, "target.txt": definition.target_image + "\n"}
    for name, data in definition.context.items():
        if name.endswith(".tar.gz"):
            files[f"context/{name}.sha256"] = hashlib.sha256(data).hexdigest() + "\n"
        else:
            files[f"context/{name}"] = data.decode()
    for item in definition.downloads:
        files[f"downloads/{item.filename}.url"] = item.url + "\n"
    return files


@pytest.mark.parametrize("case", sorted(CASES))
def test_definition_matches_golden(case: str, settings: Settings) -> None:
    definition = define_build(make_request(**CASES[case]), settings)
    expected_dir = GOLDEN / case
    produced = golden_files(definition)
    if UPDATE:
        for name, text in produced.items():
            (expected_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / name).write_text(text)
    expected = {str(p.relative_to(expected_dir)): p.read_text() for p in expected_dir.rglob("*") if p.is_file()}
    assert produced == expected


def test_same_request_same_target_and_every_input_changes_it(settings: Settings) -> None:
    base = dict(container_file="FROM alpine:3.19\n")
    target = define_build(make_request(**base), settings).target_image
    assert target == define_build(make_request(**base), settings).target_image
    variants = [
        dict(container_file="FROM alpine:3.20\n"),
        dict(base, platform="linux/arm64"),
        dict(base, build_repository="registry.example.com/other"),
    ]
    targets = {define_build(make_request(**v), settings).target_image for v in variants}
    assert target not in targets and len(targets) == 3


def test_plain_dockerfile_target_is_repo_and_hash(settings: Settings) -> None:
    definition = define_build(make_request(container_file="FROM alpine:3.19\n"), settings)
    assert definition.target_image == f"{REPO}:{definition.container_id}"
    assert len(definition.container_id) == 16 and int(definition.container_id, 16) >= 0


def test_conda_target_names_the_tools(settings: Settings) -> None:
    request = make_request(packages=Packages("CONDA", entries=("salmon", "bwa"), channels=("bioconda",)))
    definition = define_build(request, settings)
    assert definition.target_image == f"{REPO}:salmon_bwa--{definition.container_id}"


def test_many_tools_are_cut_at_a_whole_name(settings: Settings) -> None:
    entries = tuple(f"package-number-{i}" for i in range(20))
    definition = define_build(make_request(packages=Packages("CONDA", entries=entries)), settings)
    tag = definition.target_image.rsplit(":", 1)[1]
    tools = tag.split("--")[0]
    assert len(tools) <= 80 and tools.endswith(("-3", "-4")) and len(tag) <= 128
    assert tag.endswith(definition.container_id)


def test_sif_target_is_oras(settings: Settings) -> None:
    definition = define_build(make_request(**CASES["sif-conda"]), settings)
    assert definition.target_image.startswith(f"oras://{REPO}:salmon--")
    assert definition.image_reference == definition.target_image.removeprefix("oras://")


def test_request_repository_wins_over_the_default(settings: Settings) -> None:
    request = make_request(container_file="FROM alpine\n", build_repository="127.0.0.1:5000/mine/builds")
    assert define_build(request, settings).target_image.startswith("127.0.0.1:5000/mine/builds:")


@pytest.mark.parametrize(("fields", "message"), [
    (dict(container_file="FROM alpine\n", format="sif", freeze=True), "Singularity definition"),
    (dict(packages=Packages("CONDA", entries=("a",)), format="sif"), "requires freeze"),
    (dict(container_file="FROM alpine\n", build_repository="Not A Repo"), "invalid buildRepository"),
    (dict(container_file="FROM alpine\n", cache_repository="bad repo!"), "invalid cacheRepository"),
    (dict(packages=Packages("CONDA", entries=("a",), conda_opts=CondaOpts(mamba_image="bad image\nRUN x"))),
     "mambaImage"),
    (dict(packages=Packages("CONDA", entries=("a",), conda_opts=CondaOpts(commands=("RUN a\nRUN b",)))),
     "single lines"),
    (dict(packages=Packages("CONDA", entries=("bad\nname",))), "single non-empty lines"),
    (dict(freeze=True, container_image="alpine:3", container_config=ContainerConfig(env=("NOEQUALS",))),
     "KEY=value"),
    (dict(container_image="alpine:3"), "nothing to build"),
])
def test_bad_requests_say_why(fields: dict[str, Any], message: str, settings: Settings) -> None:
    from wave.errors import BadRequest

    with pytest.raises(BadRequest, match=message):
        define_build(make_request(**fields), settings)


def test_no_repository_at_all_is_a_bad_request(settings_factory: Any) -> None:
    from wave.errors import BadRequest

    with pytest.raises(BadRequest, match="no build repository: set WAVE_BUILD_REPO or buildRepository"):
        define_build(make_request(container_file="FROM alpine\n"), settings_factory(build_repo=""))


def test_inline_layer_must_match_its_digest(settings: Settings) -> None:
    from wave.errors import BadRequest

    good = inline_layer({"a": b"a"})
    bad = Layer(good.location, "sha256:" + "0" * 64, good.gzip_size, good.tar_digest)
    with pytest.raises(BadRequest, match="does not match"):
        define_build(make_request(freeze=True, container_image="alpine:3",
                                  container_config=ContainerConfig(layers=(bad,))), settings)


@pytest.mark.parametrize("prefix", ["data:", "data:application/gzip;base64,", "data:application/gzip,", "data:,"])
def test_inline_layers_decode_as_everywhere_in_wave(prefix: str, settings: Settings) -> None:
    good = inline_layer({"a": b"a"})
    layer = Layer(prefix + good.location.removeprefix("data:"), good.gzip_digest, good.gzip_size, good.tar_digest)
    definition = define_build(make_request(freeze=True, container_image="alpine:3",
                                           container_config=ContainerConfig(layers=(layer,))), settings)
    assert list(definition.context.values()) == [base64.b64decode(good.location.removeprefix("data:"))]


def test_inline_layer_that_is_not_base64_is_a_bad_request(settings: Settings) -> None:
    from wave.errors import BadRequest

    good = inline_layer({"a": b"a"})
    bad = Layer("data:application/gzip;base64,not base64!", good.gzip_digest, good.gzip_size, good.tar_digest)
    with pytest.raises(BadRequest, match="not valid base64"):
        define_build(make_request(freeze=True, container_image="alpine:3",
                                  container_config=ContainerConfig(layers=(bad,))), settings)


def test_env_keys_the_api_accepts_are_frozen_literally(settings: Settings) -> None:
    config = ContainerConfig(env=("my.key=a \"b\" $c", "my-key2=x y", "_a.b-c="))
    definition = define_build(make_request(freeze=True, container_image="alpine:3", container_config=config),
                              settings)
    assert definition.build_file.endswith('ENV my.key="a \\"b\\" \\$c"\nENV my-key2="x y"\nENV _a.b-c=""\n')


def test_env_keys_a_shell_cannot_set_are_refused_for_singularity(settings: Settings) -> None:
    from wave.errors import BadRequest

    config = ContainerConfig(env=("OK=1", "my.key=v"))
    with pytest.raises(BadRequest, match=r"'my\.key' cannot be set in a Singularity image"):
        define_build(make_request(freeze=True, format="sif", container_image="alpine:3", container_config=config),
                     settings)
