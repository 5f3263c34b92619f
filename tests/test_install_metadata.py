"""What pip sees: dependencies as compatible ranges (the tested version as the floor, the next major as the
ceiling) so an existing torch stays; the exact tested set in constraints.txt, which make and CI install with;
the docs' address in the metadata, and help texts that point there rather than into a repository."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from clutune.cli import build_parser
from clutune.docs_links import DOCS_URL, docs_page

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_dependency_is_a_range_from_the_tested_version_to_the_next_major() -> None:
    pins = _pins()
    for text in [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["dev"]]:
        req = Requirement(text)
        bounds = {spec.operator: spec.version for spec in req.specifier}
        tested = pins[canonicalize_name(req.name)]
        assert bounds == {">=": tested, "<": str(int(tested.split(".")[0]) + 1)}, (text, tested)


def test_make_and_ci_install_the_exact_tested_set() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet -c constraints.txt -e '.[dev]'" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()  # CI installs through the Makefile
    assert "clutune" not in _pins()  # the set pins clutune's dependencies, never clutune itself


def test_the_metadata_and_the_site_name_one_docs_address() -> None:
    assert PROJECT["urls"]["Documentation"] == DOCS_URL
    site = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert site["site_url"] == DOCS_URL
    assert docs_page("methods") == f"{DOCS_URL}methods.html" and (REPO / "docs" / "methods.md").is_file()


def test_help_texts_point_to_the_docs_site_not_a_repository_path() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = [a.help or "" for sub in commands.choices.values() for a in sub._actions]
    assert not [h for h in helps if "docs/" in h and DOCS_URL not in h]
    assert any(docs_page("methods") in h for h in helps)
