"""Platforms and matching them against index entries (wave.oci.platform)."""

from __future__ import annotations

import pytest

from wave.oci.platform import DEFAULT_PLATFORM, InvalidPlatform, Platform, parse_platform, platform_of

# --- parse_platform ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, ""])
def test_no_platform_means_linux_amd64(text):
    assert parse_platform(text) == Platform("linux", "amd64") == DEFAULT_PLATFORM
    assert str(parse_platform(text)) == "linux/amd64"


@pytest.mark.parametrize("text", ["linux/amd64", "amd64", "x86_64", "linux/x86_64", "x86-64", "LINUX/AMD64",
                                  " linux/amd64 "])
def test_amd64_aliases_all_parse_to_linux_amd64(text):
    assert parse_platform(text) == Platform("linux", "amd64")


@pytest.mark.parametrize("text", ["linux/arm64", "arm64", "aarch64", "linux/aarch64", "linux/arm64/v8",
                                  "linux/aarch64/v8"])
def test_arm64_aliases_and_v8_variant_all_parse_to_linux_arm64(text):
    platform = parse_platform(text)
    assert platform == Platform("linux", "arm64")
    assert str(platform) == "linux/arm64"


def test_arm_variant_is_kept():
    assert parse_platform("linux/arm/v7") == Platform("linux", "arm", "v7")
    assert str(parse_platform("linux/arm/v7")) == "linux/arm/v7"


def test_arm64_non_v8_variant_is_kept():
    assert parse_platform("linux/arm64/v9") == Platform("linux", "arm64", "v9")


@pytest.mark.parametrize("text", ["linux/ppc64le", "linux/s390x", "linux/386", "linux/riscv64", "windows/amd64"])
def test_other_known_architectures_parse(text):
    assert str(parse_platform(text)) == text


@pytest.mark.parametrize("text", ["linux/", "/amd64", "linux//v7", "linux/amd64/v1/x", "linux/arm64/"])
def test_malformed_platform_is_rejected_with_an_example(text):
    with pytest.raises(InvalidPlatform, match="expected os/arch"):
        parse_platform(text)


@pytest.mark.parametrize("text", ["linux/sparc", "mips", "unknown/unknown"])
def test_unknown_architecture_is_rejected_naming_it(text):
    with pytest.raises(InvalidPlatform, match="unknown architecture"):
        parse_platform(text)


# --- platform_of -------------------------------------------------------------------------------------


def test_platform_of_index_entry_normalises_architecture_aliases():
    assert platform_of({"os": "linux", "architecture": "x86_64"}) == Platform("linux", "amd64")
    assert platform_of({"os": "linux", "architecture": "aarch64", "variant": "v8"}) == Platform("linux", "arm64", "v8")


def test_platform_of_treats_empty_variant_as_none():
    assert platform_of({"os": "linux", "architecture": "arm", "variant": ""}).variant is None


# --- matches -----------------------------------------------------------------------------------------

AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux"}
ARM64_V8 = {"architecture": "arm64", "os": "linux", "variant": "v8"}
ARM_V6 = {"architecture": "arm", "os": "linux", "variant": "v6"}
ARM_V7 = {"architecture": "arm", "os": "linux", "variant": "v7"}
ATTESTATION = {"architecture": "unknown", "os": "unknown"}


def test_amd64_matches_amd64_entry_only():
    amd64 = parse_platform("linux/amd64")
    assert amd64.matches(AMD64)
    assert not amd64.matches(ARM64)
    assert not amd64.matches({"architecture": "amd64", "os": "windows"})


def test_x86_64_request_matches_an_entry_written_as_x86_64():
    assert parse_platform("x86_64").matches({"architecture": "x86_64", "os": "linux"})


@pytest.mark.parametrize("request_text", ["linux/arm64", "linux/arm64/v8", "aarch64"])
@pytest.mark.parametrize("entry", [ARM64, ARM64_V8, {"architecture": "arm64", "os": "linux", "variant": ""}])
def test_arm64_with_and_without_v8_variant_match_each_other(request_text, entry):
    assert parse_platform(request_text).matches(entry)


def test_arm_v7_request_does_not_match_arm_v6_entry():
    arm_v7 = parse_platform("linux/arm/v7")
    assert arm_v7.matches(ARM_V7)
    assert not arm_v7.matches(ARM_V6)


def test_arm_without_variant_matches_any_arm_entry():
    arm = parse_platform("linux/arm")
    assert arm.matches(ARM_V6)
    assert arm.matches(ARM_V7)


def test_arm64_v9_request_does_not_match_plain_arm64_entry():
    assert not parse_platform("linux/arm64/v9").matches(ARM64)


@pytest.mark.parametrize("text", ["linux/amd64", "linux/arm64", "linux/arm", "linux/arm/v7"])
def test_attestation_entries_never_match(text):
    assert not parse_platform(text).matches(ATTESTATION)


@pytest.mark.parametrize("descriptor_platform", [None, {}])
def test_entry_without_platform_never_matches(descriptor_platform):
    assert not DEFAULT_PLATFORM.matches(descriptor_platform)
