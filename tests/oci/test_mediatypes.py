"""Telling manifest kinds apart and reading Accept headers (wave.oci.mediatypes)."""

from __future__ import annotations

import pytest

from wave.oci.mediatypes import (
    ALL_MANIFEST_ACCEPT,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    is_index,
    is_oci,
    layer_type_for,
    manifest_type_of,
    parse_accept,
)

# --- manifest_type_of --------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX])
def test_mediatype_field_wins_over_the_header(declared):
    document = {"schemaVersion": 2, "mediaType": declared}
    assert manifest_type_of(document, "application/json") == declared
    other = OCI_MANIFEST if declared != OCI_MANIFEST else DOCKER_MANIFEST
    assert manifest_type_of(document, other) == declared


def test_oci_manifest_without_mediatype_takes_its_type_from_the_header():
    document = {"schemaVersion": 2, "config": {}, "layers": []}
    assert manifest_type_of(document, OCI_MANIFEST) == OCI_MANIFEST


def test_header_parameters_are_ignored():
    document = {"schemaVersion": 2, "manifests": []}
    assert manifest_type_of(document, f"{DOCKER_MANIFEST_LIST}; charset=utf-8") == DOCKER_MANIFEST_LIST


def test_mediatype_field_that_is_not_a_manifest_type_falls_back_to_the_header():
    document = {"mediaType": OCI_CONFIG, "config": {}, "layers": []}
    assert manifest_type_of(document, DOCKER_MANIFEST) == DOCKER_MANIFEST


def test_non_string_mediatype_field_falls_back_to_the_header():
    assert manifest_type_of({"mediaType": 7}, OCI_INDEX) == OCI_INDEX


@pytest.mark.parametrize("header", [None, "", "application/json", "text/plain; charset=utf-8"])
def test_without_field_or_useful_header_a_document_with_manifests_is_an_oci_index(header):
    assert manifest_type_of({"schemaVersion": 2, "manifests": []}, header) == OCI_INDEX


@pytest.mark.parametrize("header", [None, "application/octet-stream"])
def test_without_field_or_useful_header_a_document_with_layers_is_an_oci_manifest(header):
    assert manifest_type_of({"schemaVersion": 2, "config": {}, "layers": []}, header) == OCI_MANIFEST


# --- families ----------------------------------------------------------------------------------------


def test_layer_type_matches_the_manifest_family():
    assert layer_type_for(OCI_MANIFEST) == OCI_LAYER_GZIP
    assert layer_type_for(OCI_INDEX) == OCI_LAYER_GZIP
    assert layer_type_for(DOCKER_MANIFEST) == DOCKER_LAYER_GZIP
    assert layer_type_for(DOCKER_MANIFEST_LIST) == DOCKER_LAYER_GZIP


def test_is_index_only_for_index_and_list():
    assert is_index(OCI_INDEX)
    assert is_index(DOCKER_MANIFEST_LIST)
    assert not is_index(OCI_MANIFEST)
    assert not is_index(DOCKER_MANIFEST)


def test_is_oci_by_prefix():
    assert is_oci(OCI_MANIFEST)
    assert is_oci(OCI_CONFIG)
    assert not is_oci(DOCKER_MANIFEST)


def test_wave_asks_upstream_for_every_manifest_kind():
    assert set(ALL_MANIFEST_ACCEPT) == {OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST}


# --- parse_accept ------------------------------------------------------------------------------------


def test_accept_sent_as_several_headers():
    assert parse_accept((OCI_INDEX, DOCKER_MANIFEST)) == (OCI_INDEX, DOCKER_MANIFEST)


def test_accept_sent_as_one_comma_list_with_q_params():
    header = f"{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST};q=0.9 ,{OCI_MANIFEST}; q=0.5"
    assert parse_accept((header,)) == (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST)


def test_accept_mixing_headers_and_lists_keeps_order():
    headers = (f"{OCI_INDEX},{OCI_MANIFEST}", "application/vnd.docker.distribution.manifest.v1+prettyjws",
               f"{DOCKER_MANIFEST};q=0.5")
    assert parse_accept(headers) == (OCI_INDEX, OCI_MANIFEST,
                                     "application/vnd.docker.distribution.manifest.v1+prettyjws", DOCKER_MANIFEST)


@pytest.mark.parametrize("headers", [(), ("",), (" , ,",), (";q=1",)])
def test_empty_accept_items_are_dropped(headers):
    assert parse_accept(headers) == ()


def test_wildcard_accept_is_kept_verbatim():
    assert parse_accept(("*/*",)) == ("*/*",)
