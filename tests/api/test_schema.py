"""Parsing submit bodies: every field's errors name the field, v1/v2 rules, decoding (wave.api.schema)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from wave.api.schema import SubmitRequest, parse_submit
from wave.errors import BadRequest
from wave.oci.models import ContainerConfig, Layer

LIMIT = 1 << 20
SHA_A = "sha256:" + "a" * 64
SHA_B = "sha256:" + "b" * 64
DOCKERFILE = "FROM busybox\nRUN echo héllo\n"
CONDA = "channels: [conda-forge]\ndependencies: [salmon=1.10]\n"
LAYER = {"location": "https://fusionfs.seqera.io/releases/v2.4.tar.gz", "gzipDigest": SHA_A, "gzipSize": "1234",
         "tarDigest": SHA_B}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def submit(body: Any, v2: bool = False) -> SubmitRequest:
    return parse_submit(body, v2=v2, max_inline=LIMIT)


def refused(body: Any, v2: bool = False) -> str:
    """The 400's message for a body that must be refused."""
    with pytest.raises(BadRequest) as caught:
        submit(body, v2=v2)
    assert caught.value.status == 400
    return caught.value.message


def image(**fields: Any) -> dict[str, Any]:
    return {"containerImage": "docker.io/library/ubuntu:22.04", **fields}


# --- a plain image request ---------------------------------------------------------------------------


def test_image_request_with_defaults():
    request = submit({"containerImage": "busybox"})
    assert str(request.container_image) == "docker.io/library/busybox:latest"
    assert request.container_config == ContainerConfig()
    assert str(request.platform) == "linux/amd64"
    assert request.format == "docker"
    assert (request.freeze, request.dry_run, request.platform_credentials) == (False, False, False)
    assert not request.is_build


def test_full_container_config_is_parsed():
    request = submit(image(containerConfig={
        "entrypoint": ["/usr/bin/fusion"], "cmd": ["echo", "hi"], "env": ["FOO=one", "BAR=two=2"],
        "workingDir": "/some/work/dir", "layers": [LAYER],
    }))
    assert request.container_config == ContainerConfig(
        entrypoint=("/usr/bin/fusion",), cmd=("echo", "hi"), env=("FOO=one", "BAR=two=2"),
        working_dir="/some/work/dir",
        layers=(Layer(LAYER["location"], SHA_A, 1234, SHA_B),),
    )


def test_gzip_size_as_number_or_digit_string_like_the_contract():
    for size in (1234, "1234"):
        request = submit(image(containerConfig={"layers": [{**LAYER, "gzipSize": size}]}))
        assert request.container_config.layers[0].gzip_size == 1234


def test_data_layer_location_is_accepted_as_given():
    location = "data:application/gzip;base64,H4sIAAAAAAAAA"
    request = submit(image(containerConfig={"layers": [{**LAYER, "location": location}]}))
    assert request.container_config.layers[0].is_inline


@pytest.mark.parametrize("platform, normalised", [("arm64", "linux/arm64"), ("linux/aarch64", "linux/arm64"),
                                                  ("linux/arm64/v8", "linux/arm64"), ("x86_64", "linux/amd64"),
                                                  ("", "linux/amd64")])
def test_platform_is_normalised(platform, normalised):
    assert str(submit(image(containerPlatform=platform)).platform) == normalised


def test_platform_credentials_are_noted_without_being_required():
    assert submit(image(towerAccessToken="eyJ.token", towerWorkspaceId=1234)).platform_credentials


@pytest.mark.parametrize("workspace", [1234, "1234"])
def test_workspace_id_as_number_or_digit_string(workspace):
    submit(image(towerWorkspaceId=workspace))


def test_client_ip_is_kept():
    assert parse_submit(image(), v2=False, max_inline=LIMIT, client_ip="10.1.2.3").client_ip == "10.1.2.3"


# --- fields real clients send beyond the contract ---------------------------------------------------


def test_fields_beyond_the_contract_are_accepted_and_logged_at_debug(caplog):
    extra = {"nameStrategy": "imageSuffix", "containerIncludes": ["busybox"],
             "mirror": False, "scanMode": "none", "labels": {"a": "b"}}
    with caplog.at_level(logging.DEBUG, logger="wave.api"):
        request = submit(image(workflowId="wf-1", **extra), v2=True)
    assert str(request.container_image) == "docker.io/library/ubuntu:22.04"
    assert request.workflow_id == "wf-1"  # read: it lengthens how long Platform credentials are cached
    logged = " ".join(record.getMessage() for record in caplog.records)
    for name in extra:
        assert name in logged


def test_dry_run_is_read():
    assert submit(image(dryRun=True)).dry_run


def test_empty_strings_count_as_absent():
    request = submit(image(containerFile="", condaFile="", containerPlatform="", buildRepository=""))
    assert (request.container_file, request.conda_file, request.build_repository) == (None, None, None)
    assert str(request.platform) == "linux/amd64"


# --- types: every field's error names it -------------------------------------------------------------


@pytest.mark.parametrize("body, field", [
    (image(containerImage=42), "containerImage"),
    (image(containerImage=["busybox"]), "containerImage"),
    ({"containerFile": 42}, "containerFile"),
    ({"condaFile": {"a": 1}}, "condaFile"),
    ({"spackFile": True}, "spackFile"),
    (image(containerConfig="entrypoint=sh"), "containerConfig"),
    (image(containerConfig=[]), "containerConfig"),
    (image(containerConfig={"entrypoint": "sh"}), "containerConfig.entrypoint"),
    (image(containerConfig={"cmd": ["echo", 1]}), "containerConfig.cmd"),
    (image(containerConfig={"env": "FOO=1"}), "containerConfig.env"),
    (image(containerConfig={"env": ["1FOO=x"]}), "containerConfig.env"),
    (image(containerConfig={"env": ["=x"]}), "containerConfig.env"),
    (image(containerConfig={"workingDir": 5}), "containerConfig.workingDir"),
    (image(containerConfig={"workingDir": "relative/dir"}), "containerConfig.workingDir"),
    (image(containerConfig={"layers": {"location": "x"}}), "containerConfig.layers"),
    (image(containerConfig={"layers": [LAYER] * 128}), "containerConfig.layers"),
    (image(containerConfig={"layers": ["https://x/l.tgz"]}), "containerConfig.layers[0]"),
    (image(containerConfig={"layers": [LAYER, {**LAYER, "location": 5}]}), "containerConfig.layers[1].location"),
    (image(containerConfig={"layers": [{**LAYER, "location": ""}]}), "containerConfig.layers[0].location"),
    (image(containerConfig={"layers": [{**LAYER, "location": "ftp://x/l.tgz"}]}), "containerConfig.layers[0].location"),
    (image(containerConfig={"layers": [{**LAYER, "location": "/tmp/l.tgz"}]}), "containerConfig.layers[0].location"),
    (image(containerConfig={"layers": [{**LAYER, "gzipDigest": "a" * 64}]}), "containerConfig.layers[0].gzipDigest"),
    (image(containerConfig={"layers": [{**LAYER, "gzipDigest": None}]}), "containerConfig.layers[0].gzipDigest"),
    (image(containerConfig={"layers": [{**LAYER, "tarDigest": "md5:abc"}]}), "containerConfig.layers[0].tarDigest"),
    (image(containerConfig={"layers": [{**LAYER, "tarDigest": SHA_B.upper()}]}),
     "containerConfig.layers[0].tarDigest"),
    (image(containerConfig={"layers": [{**LAYER, "gzipSize": 0}]}), "containerConfig.layers[0].gzipSize"),
    (image(containerConfig={"layers": [{**LAYER, "gzipSize": -5}]}), "containerConfig.layers[0].gzipSize"),
    (image(containerConfig={"layers": [{**LAYER, "gzipSize": "12kb"}]}), "containerConfig.layers[0].gzipSize"),
    (image(containerConfig={"layers": [{**LAYER, "gzipSize": True}]}), "containerConfig.layers[0].gzipSize"),
    (image(containerConfig={"layers": [{**LAYER, "gzipSize": 12.5}]}), "containerConfig.layers[0].gzipSize"),
    (image(containerConfig={"layers": [{k: v for k, v in LAYER.items() if k != "gzipSize"}]}),
     "containerConfig.layers[0].gzipSize"),
    (image(containerPlatform=64), "containerPlatform"),
    (image(containerPlatform="linux/sparc"), "containerPlatform"),
    (image(containerPlatform="linux/"), "containerPlatform"),
    (image(buildRepository=1), "buildRepository"),
    (image(buildRepository="localhost:5000/builds:latest"), "buildRepository"),
    (image(cacheRepository="Localhost:5000/Cache"), "cacheRepository"),
    (image(cacheRepository=f"localhost:5000/cache@{SHA_A}"), "cacheRepository"),
    (image(freeze="true"), "freeze"),
    (image(freeze=1), "freeze"),
    (image(dryRun="yes"), "dryRun"),
    (image(format="oci"), "format"),
    (image(format=1), "format"),
    (image(timestamp=1712697541), "timestamp"),
    (image(fingerprint=["x"]), "fingerprint"),
    (image(towerAccessToken=123), "towerAccessToken"),
    (image(towerRefreshToken={"t": 1}), "towerRefreshToken"),
    (image(towerEndpoint=False), "towerEndpoint"),
    (image(towerWorkspaceId="personal"), "towerWorkspaceId"),
    (image(towerWorkspaceId=12.5), "towerWorkspaceId"),
    ({"packages": "CONDA"}, "packages"),
    ({"packages": {"type": "PIP", "entries": ["x"]}}, "packages.type"),
    ({"packages": {"entries": ["x"]}}, "packages.type"),
    ({"packages": {"type": "CONDA", "entries": "salmon"}}, "packages.entries"),
    ({"packages": {"type": "CONDA", "packages": [1]}}, "packages.packages"),
    ({"packages": {"type": "CONDA", "entries": ["x"], "channels": "bioconda"}}, "packages.channels"),
])
def test_type_errors_are_400_naming_the_field(body, field):
    message = refused(body, v2=True)
    assert message.startswith(f"{field} ") or message.startswith(f"{field}:") or f" {field} " in message, message


NESTED_PACKAGE_FIELDS = [
    ({"envFile": 5}, "packages.envFile"),
    ({"envFile": "not base64!"}, "packages.envFile"),
    ({"environment": "%%%"}, "packages.environment"),
    ({"condaOpts": "micromamba"}, "packages.condaOpts"),
    ({"condaOpts": {"mambaImage": 1}}, "packages.condaOpts.mambaImage"),
    ({"condaOpts": {"commands": "echo"}}, "packages.condaOpts.commands"),
    ({"condaOpts": {"basePackages": ["x"]}}, "packages.condaOpts.basePackages"),
    ({"spackOpts": {"commands": "echo"}}, "packages.spackOpts.commands"),
    ({"spackOpts": {"basePackages": 1}}, "packages.spackOpts.basePackages"),
]


@pytest.mark.parametrize("fields, field", NESTED_PACKAGE_FIELDS)
def test_nested_package_field_errors_name_the_full_path(fields, field):
    message = refused({"packages": {"type": "CONDA", "entries": ["salmon"], **fields}}, v2=True)
    assert message.startswith(f"{field} "), message


@pytest.mark.parametrize("fields, field", NESTED_PACKAGE_FIELDS)
def test_nested_package_field_errors_are_400_naming_at_least_the_leaf(fields, field):
    message = refused({"packages": {"type": "CONDA", "entries": ["salmon"], **fields}}, v2=True)
    assert field.rsplit(".", 1)[-1] in message


def test_workspace_id_true_is_refused():
    assert "towerWorkspaceId" in refused(image(towerWorkspaceId=True))


def test_env_item_without_value_is_refused():
    assert "containerConfig.env" in refused(image(containerConfig={"env": ["FOO"]}))


def test_layer_digest_with_trailing_newline_is_refused():
    assert "gzipDigest" in refused(image(containerConfig={"layers": [{**LAYER, "gzipDigest": SHA_A + "\n"}]}))


def test_body_that_is_not_an_object_is_refused():
    for body in ([], "busybox", None, 1):
        assert "JSON object" in refused(body)


def test_too_long_string_is_refused_naming_the_field():
    assert refused(image(containerImage="a/" * 600)).startswith("containerImage is longer than")


def test_too_many_list_items_is_refused_naming_the_field():
    assert "containerConfig.env has more than" in refused(image(containerConfig={"env": ["A=1"] * 1001}))


def test_invalid_image_reference_says_what_is_wrong():
    message = refused({"containerImage": "Docker.io/Library/Ubuntu"})
    assert message.startswith("containerImage: ")
    assert "lowercase" in message


# --- base64 ------------------------------------------------------------------------------------------


def test_container_file_is_decoded_from_base64_utf8():
    request = submit({"containerFile": b64(DOCKERFILE)})
    assert request.container_file == DOCKERFILE
    assert request.is_build


@pytest.mark.parametrize("encoded", ["FROM busybox", "RlJPTSBidXN5Ym94\nCg==", "RlJPTSBidXN5Ym94C",
                                     base64.b64encode(b"\xff\xfe FROM").decode()])
def test_container_file_that_is_not_base64_utf8_is_refused(encoded):
    assert refused({"containerFile": encoded}) == "containerFile must be base64 of UTF-8 text"


def test_conda_and_spack_files_are_decoded_on_v1():
    assert submit({"condaFile": b64(CONDA)}).conda_file == CONDA
    assert submit({"spackFile": b64("spack:\n  specs: [bwa]\n")}).spack_file == "spack:\n  specs: [bwa]\n"


def test_env_file_is_decoded_in_either_spelling():
    for name in ("envFile", "environment"):
        request = submit({"packages": {"type": "CONDA", name: b64(CONDA)}}, v2=True)
        assert request.packages is not None
        assert request.packages.env_file == CONDA


# --- v1 versus v2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["condaFile", "spackFile"])
def test_conda_and_spack_files_are_refused_by_v2_pointing_at_packages(field):
    message = refused({field: b64(CONDA)}, v2=True)
    assert "/v1alpha2/container" in message
    assert "packages" in message


def test_packages_are_refused_by_v1():
    message = refused({"packages": {"type": "CONDA", "entries": ["salmon"]}}, v2=False)
    assert message == "packages is only accepted by /v1alpha2/container"


def test_packages_with_entries_spelling_as_in_the_example():
    request = submit({"packages": {"type": "CONDA", "entries": ["salmon", "bwa"],
                                   "channels": ["conda-forge", "bioconda"]}}, v2=True)
    assert request.packages is not None
    assert request.packages.type == "CONDA"
    assert request.packages.entries == ("salmon", "bwa")
    assert request.packages.channels == ("conda-forge", "bioconda")
    assert request.is_build


def test_packages_with_packages_spelling_as_in_the_reference_table():
    request = submit({"packages": {"type": "SPACK", "packages": ["bwa@0.7.15"]}}, v2=True)
    assert request.packages is not None
    assert request.packages.entries == ("bwa@0.7.15",)


def test_package_options_are_read():
    request = submit({"packages": {
        "type": "CONDA", "entries": ["salmon"],
        "condaOpts": {"mambaImage": "mambaorg/micromamba:1.5.1", "commands": ["echo hi"],
                      "basePackages": "conda-forge::procps-ng"},
        "spackOpts": {"commands": ["spack gc -y"], "basePackages": "cmake"},
    }}, v2=True)
    packages = request.packages
    assert packages is not None
    assert (packages.conda_opts.mamba_image, packages.conda_opts.commands, packages.conda_opts.base_packages) == (
        "mambaorg/micromamba:1.5.1", ("echo hi",), "conda-forge::procps-ng")
    assert (packages.spack_opts.commands, packages.spack_opts.base_packages) == (("spack gc -y",), "cmake")


@pytest.mark.parametrize("packages", [{"type": "CONDA"}, {"type": "CONDA", "entries": []},
                                      {"type": "CONDA", "envFile": ""}])
def test_packages_need_entries_or_an_env_file(packages):
    assert "packages needs entries" in refused({"packages": packages}, v2=True)


# --- what a request must (not) combine ---------------------------------------------------------------


def test_image_and_container_file_together_are_refused():
    assert refused(image(containerFile=b64(DOCKERFILE))) == "give either containerImage or containerFile, not both"


def test_image_and_packages_together_are_refused():
    message = refused(image(packages={"type": "CONDA", "entries": ["x"]}), v2=True)
    assert message == "give either containerImage or packages, not both"


def test_two_recipes_are_refused_naming_both():
    assert refused({"containerFile": b64(DOCKERFILE), "condaFile": b64(CONDA)}) == (
        "give only one of containerFile, condaFile")


@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("body", [{}, {"containerImage": None}, {"containerImage": ""}, {"containerConfig": {}},
                                  {"containerPlatform": "linux/amd64"}])
def test_neither_image_nor_recipe_is_refused(body, v2):
    assert "containerImage or containerFile" in refused(body, v2=v2)


def test_image_by_digest_with_a_container_config_is_refused_saying_why():
    message = refused({"containerImage": f"quay.io/org/tool@{SHA_A}", "containerConfig": {"env": ["A=1"]}})
    assert "digest" in message
    assert "tag" in message
    assert f"quay.io/org/tool@{SHA_A}" in message


def test_image_by_digest_with_tag_and_a_container_config_is_refused():
    assert "digest" in refused({"containerImage": f"quay.io/org/tool:1@{SHA_A}", "containerConfig": {"cmd": []}})


@pytest.mark.parametrize("config", [None, {}, {"entrypoint": None, "env": [], "layers": []}])
def test_image_by_digest_with_an_empty_container_config_is_accepted(config):
    request = submit({"containerImage": f"quay.io/org/tool@{SHA_A}", "containerConfig": config})
    assert request.container_config.is_empty


def test_image_by_tag_with_a_container_config_is_accepted():
    assert submit(image(containerConfig={"cmd": []})).container_config.cmd == ()


def test_container_file_with_a_container_config_is_accepted():
    request = submit({"containerFile": b64(DOCKERFILE), "containerConfig": {"env": ["A=1"]}})
    assert request.container_config.env == ("A=1",)


def test_build_settings_are_kept():
    request = submit({"containerFile": b64(DOCKERFILE), "buildRepository": "localhost:5000/builds",
                      "cacheRepository": "localhost:5000/cache", "freeze": True, "format": "sif",
                      "containerPlatform": "linux/arm64"}, v2=True)
    assert (request.build_repository, request.cache_repository) == ("localhost:5000/builds", "localhost:5000/cache")
    assert (request.freeze, request.format, str(request.platform)) == (True, "sif", "linux/arm64")


def test_sif_refuses_env_keys_a_shell_cannot_set_when_the_request_arrives():
    body = {"containerImage": "docker.io/library/busybox:latest", "format": "sif", "freeze": True,
            "containerConfig": {"env": ["my.key=1"]}}
    with pytest.raises(BadRequest, match="Singularity"):
        parse_submit(body, v2=True, max_inline=1 << 20)
    body["format"] = "docker"
    assert parse_submit(body, v2=True, max_inline=1 << 20).container_config.env == ("my.key=1",)


# --- the typed model: what the contract leaves loose, and what the surface adds ----------------------


@pytest.mark.parametrize("size", ["9" * 19, "9" * 40, 2**63, 2**70, "١٢٣", "²", "12 ", "+12"])
def test_gzip_size_beyond_int64_or_not_ascii_digits_is_a_400(size):
    message = refused(image(containerConfig={"layers": [{**LAYER, "gzipSize": size}]}))
    assert message == "containerConfig.layers[0].gzipSize must be a positive number of bytes"


def test_largest_gzip_size_is_accepted_as_an_int():
    request = submit(image(containerConfig={"layers": [{**LAYER, "gzipSize": str(2**63 - 1)}]}))
    assert request.container_config.layers[0].gzip_size == 2**63 - 1


def test_platform_fields_are_kept_typed_and_tokens_never_shown():
    request = submit(image(towerAccessToken="eyJ.secret-access", towerRefreshToken="secret-refresh",
                           towerEndpoint="https://api.example", towerWorkspaceId="1234"))
    assert (request.tower_access_token, request.tower_refresh_token) == ("eyJ.secret-access", "secret-refresh")
    assert (request.tower_endpoint, request.tower_workspace_id) == ("https://api.example", 1234)
    for shown in (repr(request), str(request)):
        assert "secret" not in shown
        assert "tower_access_token='***'" in shown


def test_identity_fields_in_the_body_are_not_believed():
    request = parse_submit(image(userEmail="admin@seqera.io", clientIp="127.0.0.1", sourceImage="evil"),
                           v2=True, max_inline=LIMIT, client_ip="10.1.2.3")
    assert (request.user_email, request.client_ip) == (None, "10.1.2.3")
    assert request.source_image == "docker.io/library/ubuntu:22.04"


def test_image_is_parsed_once_and_kept_as_written():
    request = submit({"containerImage": "quay.io/org/tool:1.0"})
    assert request.container_image is not None
    assert (request.container_image.registry, request.container_image.repository) == ("quay.io", "org/tool")
    assert request.image_text == "quay.io/org/tool:1.0"


def test_sif_without_freeze_is_refused_when_the_request_arrives():
    assert "requires freeze" in refused({"containerFile": b64(DOCKERFILE), "format": "sif"}, v2=True)
