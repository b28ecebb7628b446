"""Image references with Docker Hub's conventions (wave.oci.reference)."""

from __future__ import annotations

import pytest

from wave.oci.reference import ImageRef, InvalidReference, parse_reference, parse_repository, reference_kind

SHA = "sha256:" + "a" * 64
OTHER_SHA = "sha256:" + "b" * 64


# --- Docker Hub conventions --------------------------------------------------------------------------


def test_one_part_name_is_docker_hub_library_image_with_latest_tag():
    ref = parse_reference("busybox")
    assert ref == ImageRef("docker.io", "library/busybox", "latest", None)
    assert str(ref) == "docker.io/library/busybox:latest"


def test_two_part_docker_hub_name_gets_no_library_prefix():
    assert parse_reference("nextflow/nextflow:24.04.1") == ImageRef("docker.io", "nextflow/nextflow", "24.04.1")


@pytest.mark.parametrize("text", ["docker.io/busybox", "index.docker.io/busybox", "registry-1.docker.io/busybox",
                                  "docker.io/library/busybox:latest"])
def test_docker_hub_host_aliases_all_mean_docker_io(text):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag) == ("docker.io", "library/busybox", "latest")


def test_docker_io_endpoint_is_registry_1():
    assert parse_reference("busybox").endpoint == "registry-1.docker.io"


@pytest.mark.parametrize("text, endpoint", [
    ("quay.io/biocontainers/samtools:1.17--h00cdaf9_0", "quay.io"),
    ("localhost:5000/a/b:tag", "localhost:5000"),
    ("127.0.0.1:5000/library/busybox", "127.0.0.1:5000"),
])
def test_other_registries_are_their_own_endpoint(text, endpoint):
    assert parse_reference(text).endpoint == endpoint


# --- registries, tags, digests -----------------------------------------------------------------------


def test_localhost_with_port_and_nested_repository():
    assert parse_reference("localhost:5000/a/b:tag") == ImageRef("localhost:5000", "a/b", "tag")


def test_localhost_without_port_is_a_registry():
    assert parse_reference("localhost/busybox") == ImageRef("localhost", "busybox", "latest")


def test_ip_registry_with_digest_has_no_tag():
    ref = parse_reference(f"127.0.0.1:5000/x@{SHA}")
    assert ref == ImageRef("127.0.0.1:5000", "x", None, SHA)
    assert ref.reference == SHA
    assert str(ref) == f"127.0.0.1:5000/x@{SHA}"


def test_bracketed_ipv6_registry_with_port():
    ref = parse_reference("[::1]:5000/x")
    assert ref == ImageRef("[::1]:5000", "x", "latest")
    assert ref.endpoint == "[::1]:5000"


def test_bracketed_ipv6_registry_without_port():
    assert parse_reference("[::1]/lab/busybox:1").registry == "[::1]"


def test_three_part_repository_names_are_kept_whole():
    ref = parse_reference("ghcr.io/org/team/tool:v1")
    assert (ref.registry, ref.repository, ref.tag) == ("ghcr.io", "org/team/tool", "v1")
    assert parse_reference("lab/nested/busybox").repository == "lab/nested/busybox"


def test_first_component_without_dot_colon_or_localhost_is_part_of_the_name():
    ref = parse_reference("myorg/tool")
    assert (ref.registry, ref.repository) == ("docker.io", "myorg/tool")


def test_registry_host_is_lowercased():
    assert parse_reference("Registry.Example.com/foo/bar:1").registry == "registry.example.com"


def test_tag_and_digest_together_keep_both_and_pull_by_digest():
    ref = parse_reference(f"quay.io/a/b:1.0@{SHA}")
    assert (ref.tag, ref.digest) == ("1.0", SHA)
    assert ref.reference == SHA
    assert str(ref) == f"quay.io/a/b:1.0@{SHA}"


def test_bare_host_with_port_is_read_as_docker_hub_name_and_tag_like_docker_does():
    assert parse_reference("localhost:5000") == ImageRef("docker.io", "library/localhost", "5000")


@pytest.mark.parametrize("tag", ["latest", "1.0", "v1.2.3-rc.1", "Release_2024", "_x", "a" * 128])
def test_valid_tags_are_accepted(tag):
    assert parse_reference(f"busybox:{tag}").tag == tag


@pytest.mark.parametrize("text", ["busybox:", "busybox:.hidden", "busybox:-dash", "busybox:a+b",
                                  "busybox:" + "a" * 129])
def test_bad_tag_is_rejected_naming_the_tag(text):
    with pytest.raises(InvalidReference, match="invalid tag"):
        parse_reference(text)


@pytest.mark.parametrize("text", ["busybox@", "busybox@sha256", "busybox@sha256:", "busybox@sha256:abc!",
                                  "busybox@:abc"])
def test_bad_digest_is_rejected_naming_the_digest(text):
    with pytest.raises(InvalidReference, match="invalid digest"):
        parse_reference(text)


@pytest.mark.parametrize("text", ["BusyBox", "library/Busybox:latest", "localhost:5000/Lab/busybox"])
def test_uppercase_repository_is_rejected(text):
    with pytest.raises(InvalidReference, match="lowercase"):
        parse_reference(text)


@pytest.mark.parametrize("text", ["", " busybox", "busybox ", "a//b", "a/", "/a", "a__-b", "-a", "a..b",
                                  "has space/x", "x" * 513])
def test_malformed_references_are_rejected(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_non_string_is_rejected():
    with pytest.raises(InvalidReference):
        parse_reference(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["exa mple.com/x", "example.com:port/x", "[::1/x", "exa_mple.com/x"])
def test_bad_registry_host_is_rejected_naming_the_host(text):
    with pytest.raises(InvalidReference, match="invalid registry host"):
        parse_reference(text)


def test_bad_port_is_rejected_naming_the_registry_host():
    with pytest.raises(InvalidReference, match=r"invalid registry host 'example\.com:port'"):
        parse_reference("example.com:port/x")


@pytest.mark.parametrize("text", ["ab-c_d/e__f.g", "a-----b/c", "registry.example.com/x.y/z_1"])
def test_name_separators_follow_the_distribution_grammar(text):
    parse_reference(text)


@pytest.mark.parametrize("text", ["busybox\n:latest", f"busybox:tag\n@{SHA}"])
def test_newline_inside_a_reference_is_rejected(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_non_ascii_tag_is_rejected():
    with pytest.raises(InvalidReference, match="invalid tag"):
        parse_reference("busybox:tägs")


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "A" * 64])
def test_sha256_digest_must_be_64_lowercase_hex(digest):
    with pytest.raises(InvalidReference, match="invalid digest"):
        parse_reference(f"busybox@{digest}")


# --- reference / with_reference ----------------------------------------------------------------------


def test_reference_is_the_tag_when_not_pinned():
    assert parse_reference("busybox:1.36").reference == "1.36"


def test_reference_defaults_to_latest_for_a_bare_ref():
    assert ImageRef("docker.io", "library/busybox").reference == "latest"


def test_with_reference_digest_drops_the_tag():
    ref = parse_reference("localhost:5000/a/b:tag").with_reference(SHA)
    assert ref == ImageRef("localhost:5000", "a/b", None, SHA)
    assert str(ref) == f"localhost:5000/a/b@{SHA}"


def test_with_reference_tag_drops_the_digest():
    ref = parse_reference(f"localhost:5000/a/b@{SHA}").with_reference("v2")
    assert ref == ImageRef("localhost:5000", "a/b", "v2", None)


def test_with_reference_keeps_registry_and_repository_and_leaves_original_unchanged():
    original = parse_reference("quay.io/org/tool:1")
    moved = original.with_reference(OTHER_SHA)
    assert (moved.registry, moved.repository) == ("quay.io", "org/tool")
    assert original.tag == "1"


# --- repositories ------------------------------------------------------------------------------------


def test_repository_has_no_tag_or_digest():
    assert parse_repository("localhost:5000/builds") == ImageRef("localhost:5000", "builds", None, None)


def test_repository_on_docker_hub_keeps_hub_conventions():
    assert parse_repository("docker.io/user/my-image") == ImageRef("docker.io", "user/my-image")
    assert parse_repository("cache") == ImageRef("docker.io", "library/cache")


def test_repository_on_registry_with_port_is_not_mistaken_for_a_tag():
    assert parse_repository("127.0.0.1:5000/a/b").repository == "a/b"


@pytest.mark.parametrize("text", ["localhost:5000/builds:latest", f"localhost:5000/builds@{SHA}", "user/img:1"])
def test_repository_refuses_tags_and_digests(text):
    with pytest.raises(InvalidReference, match="no tag or digest"):
        parse_repository(text)


def test_repository_with_uppercase_is_rejected():
    with pytest.raises(InvalidReference):
        parse_repository("localhost:5000/Builds")


@pytest.mark.parametrize(("text", "kind"), [
    ("sha256:" + "a" * 64, "digest"),
    ("sha512:" + "b" * 128, "digest"),
    ("latest", "tag"),
    ("v1.2_3-rc", "tag"),
    ("sha256:abc", "bad-digest"),  # hex too short
    ("sha256:" + "A" * 64, "bad-digest"),  # uppercase hex
    ("SHA256:" + "a" * 64, "bad-digest"),  # the algorithm is lowercase
    (".INVALID_MANIFEST_NAME", "neither"),  # what the OCI conformance suite asks for
    ("-leading-dash", "neither"),
    ("x" * 129, "neither"),  # a tag has at most 128 characters
])
def test_reference_kind(text: str, kind: str) -> None:
    assert reference_kind(text) == kind
