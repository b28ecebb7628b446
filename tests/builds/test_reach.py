"""Which hosts a build makes the builder reach: the FROM images a user wrote, the build and cache repositories."""

from __future__ import annotations

import pytest

from wave.addresses import address_policy
from wave.builds.definition import BuildDefinition
from wave.builds.reach import check_build_reach, user_images
from wave.errors import BadRequest
from wave.http import AddressGuard


def definition(build_file: str, kind: str = "dockerfile", fmt: str = "docker", repository: str = "r.example/b",
               cache: str | None = None) -> BuildDefinition:
    return BuildDefinition(kind=kind, format=fmt, platform="linux/amd64", build_file=build_file, container_id="x",
                           repository=repository, cache_repository=cache, target_image=f"{repository}:x")


def test_from_lines_without_stages_scratch_and_args() -> None:
    text = ("ARG BASE=alpine\nFROM --platform=linux/amd64 10.0.0.5:5000/base:1 AS build\nRUN make\n"
            "from build as second\nFROM scratch\nFROM ${BASE}\nFROM   registry.lan/final:2\n")
    assert user_images(definition(text)) == ["10.0.0.5:5000/base:1", "registry.lan/final:2"]


def test_singularity_from_and_recipes_wave_wrote() -> None:
    assert user_images(definition("Bootstrap: docker\nFrom: 127.0.0.1:6379/x:1\n", "freeze", "sif")) == [
        "127.0.0.1:6379/x:1"]
    assert user_images(definition("FROM 127.0.0.1:6379/operator/conda:1\n", "conda")) == []


@pytest.mark.parametrize(("build_file", "repository", "cache", "named"), [
    ("FROM 127.0.0.1:6390/x:1\n", "93.184.216.34/b", None, "FROM image 127.0.0.1:6390/x:1"),
    ("FROM 93.184.216.34/x:1\n", "10.0.0.1:5000/builds", None, "buildRepository 10.0.0.1:5000/builds"),
    ("FROM 93.184.216.34/x:1\n", "93.184.216.34/b", "[::1]:5000/cache", "cacheRepository [::1]:5000/cache"),
])
async def test_an_internal_host_is_refused_naming_it_and_the_setting(build_file: str, repository: str,
                                                                     cache: str | None, named: str) -> None:
    guard = AddressGuard(address_policy(("none",), listen_host="0.0.0.0"))
    with pytest.raises(BadRequest) as caught:
        await check_build_reach(guard, definition(build_file, repository=repository, cache=cache))
    assert caught.value.message.startswith(named) and "WAVE_TRUSTED_HOSTS" in caught.value.message
    trusted = AddressGuard(address_policy(("127.0.0.0/8", "10.0.0.0/8", "::1"), listen_host="0.0.0.0"))
    await check_build_reach(trusted, definition(build_file, repository=repository, cache=cache))
