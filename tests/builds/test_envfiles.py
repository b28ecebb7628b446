"""Conda and spack environment files: written with PyYAML, read back to name the tools in a tag."""

from __future__ import annotations

import pytest
import yaml

from wave.builds import conda, spack


def test_conda_yaml_reads_back_as_the_entries() -> None:
    text = conda.conda_yaml(("salmon=1.10.1", "bioconda::samtools", "weird: name", "pip:multiqc>=1.20"),
                            ("conda-forge",))
    assert yaml.safe_load(text) == {"channels": ["conda-forge"],
                                    "dependencies": ["salmon=1.10.1", "bioconda::samtools", "weird: name", "pip",
                                                     {"pip": ["multiqc>=1.20"]}]}


def test_spack_yaml_reads_back_as_the_entries() -> None:
    text = spack.spack_yaml(("bwa@0.7.15", "salmon +mpi", "- odd"))
    assert yaml.safe_load(text)["spack"]["specs"] == ["bwa@0.7.15", "salmon +mpi", "- odd"]


@pytest.mark.parametrize("text, tools", [
    ("name: rnaseq\ndependencies: [star]\n", ["rnaseq"]),
    ("dependencies:\n  - star=2.7\n  - pip:\n    - requests==2.31\n", ["star-2.7", "requests-2.31"]),
    ("dependencies: [star, 'bwa=0.7']  # flow style\n", ["star", "bwa-0.7"]),
    ("{not yaml: [", []),
    ("- just\n- a list\n", []),
])
def test_conda_tools_come_from_the_name_or_the_dependencies(text: str, tools: list[str]) -> None:
    assert conda.tool_names(text) == tools


@pytest.mark.parametrize("text, tools", [
    ("spack:\n  specs: [samtools@1.17, bcftools]\n", ["samtools-1.17", "bcftools"]),
    ("spack:\n  specs:\n  - bwa@0.7.15\n  - salmon +mpi\n", ["bwa-0.7.15", "salmon"]),
    ("spack: [", []),
    ("specs: [bwa]\n", []),
])
def test_spack_tools_come_from_the_specs(text: str, tools: list[str]) -> None:
    assert spack.tool_names(text) == tools


def test_channels_are_added_only_to_a_file_that_names_none() -> None:
    assert conda.with_channels("dependencies: [star]", ("bioconda",)) == "channels:\n- bioconda\ndependencies: [star]\n"
    named = "# mine\nchannels: [conda-forge]\ndependencies: [star]\n"
    assert conda.with_channels(named, ("bioconda",)) == named
