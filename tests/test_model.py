"""The request model itself (wave.model): built in code it keeps the contract's rules, so services may trust
any SubmitRequest they are given; the surface's identity fields are added with msgspec's replace."""

from __future__ import annotations

import msgspec
import pytest

from wave.errors import BadRequest
from wave.model import Packages, SubmitRequest, decode_submit
from wave.oci.models import ContainerConfig
from wave.oci.platform import parse_platform
from wave.oci.reference import parse_reference

IMAGE = parse_reference("quay.io/org/tool:1.0")
PINNED = parse_reference("quay.io/org/tool@sha256:" + "a" * 64)


@pytest.mark.parametrize(("fields", "message"), [
    ({}, r"containerImage or containerFile \(or packages\) is required"),
    ({"container_image": IMAGE, "container_file": "FROM x\n"}, "give either containerImage or containerFile"),
    ({"container_file": "FROM x\n", "conda_file": "dependencies: []\n"}, "give only one of containerFile, condaFile"),
    ({"packages": Packages("CONDA")}, "packages needs entries"),
    ({"packages": Packages("SPACK", entries=("bwa\nRUN x",))}, "single non-empty lines"),
    ({"container_image": IMAGE, "container_config": ContainerConfig(env=("NOVALUE",))}, "must be KEY=value"),
    ({"container_image": IMAGE, "container_config": ContainerConfig(working_dir="rel")}, "absolute path"),
    ({"container_image": PINNED, "container_config": ContainerConfig(cmd=("sh",))}, "given by digest"),
    ({"container_file": "FROM x\n", "format": "sif"}, "requires freeze"),
    ({"container_image": IMAGE, "format": "sif", "freeze": True,
      "container_config": ContainerConfig(env=("a.b=1",))}, "cannot be set in a Singularity image"),
])
def test_a_request_built_in_code_keeps_the_rules(fields: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        SubmitRequest(**fields)  # type: ignore[arg-type]


def test_identity_is_added_by_replace_and_the_rules_still_hold() -> None:
    request = decode_submit({"containerImage": "quay.io/org/tool:1.0"}, v2=True, max_inline=1 << 20)
    known = msgspec.structs.replace(request, user_email="alice@seqera.io")
    assert (known.user_email, known.container_image, known.platform) == ("alice@seqera.io", IMAGE,
                                                                         parse_platform("linux/amd64"))
    with pytest.raises(BadRequest, match="given by digest"):
        msgspec.structs.replace(known, container_image=PINNED, container_config=ContainerConfig(cmd=("sh",)))


def test_package_aliases_fold_into_the_fields_services_read() -> None:
    body = {"packages": {"type": "SPACK", "packages": ["bwa@0.7.15"],
                         "environment": "c3BhY2s6CiAgc3BlY3M6IFtid2FdCg=="}}
    packages = decode_submit(body, v2=True, max_inline=1 << 20).packages
    assert packages is not None
    assert (packages.entries, packages.env_file) == (("bwa@0.7.15",), "spack:\n  specs: [bwa]\n")


@pytest.mark.parametrize(("body", "message"), [
    ({"containerImage": "a/b", "containerConfig": {"entrypoint": ["sh", 1]}},
     "containerConfig.entrypoint must be a list of strings"),
    ({"containerImage": "a/b", "containerConfig": {"layers": [5]}}, "containerConfig.layers[0] must be a JSON object"),
    ({"containerImage": "a/b", "containerConfig": {"layers": [{}]}}, "containerConfig.layers[0].location must be"),
    ({"containerImage": "a/b", "dryRun": "yes"}, "dryRun must be true or false"),
    ({"containerImage": "a/b", "towerEndpoint": ["x"]}, "towerEndpoint must be a string"),
    ({"containerImage": "a/b", "towerEndpoint": "x" * 5000}, "towerEndpoint is longer than 4096 characters"),
    ({"packages": {"type": "CONDA", "entries": ["x"], "condaOpts": []}}, "packages.condaOpts must be a JSON object"),
])
def test_library_errors_are_worded_as_wave_words_them(body: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_submit(body, v2=True, max_inline=1 << 20)
    assert caught.value.message.startswith(message), caught.value.message
