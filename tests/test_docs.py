"""The documentation site: it builds with ``--strict``, strict really refuses broken links and references, every
command has its page, and the README stays a front page."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from clutune.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 220


def _mkdocs_build(config_file: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config_file)]
    return subprocess.run(
        [*command, "--site-dir", str(site)], cwd=config_file.parent, env=env, capture_output=True, text=True
    )


def _subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1, "clutune's parser has one set of subcommands"
    return sorted(actions[0].choices)


def test_site_builds_strict_with_api_reference(tmp_path: Path) -> None:
    done = _mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").exists()
    for command in _subcommands():
        assert (tmp_path / "site" / "commands" / f"{command}.html").exists(), command
    # mkdocstrings rendered the reference from the docstrings, not an empty page
    reference = (tmp_path / "site" / "reference.html").read_text()
    assert 'id="clutune.core.config.Config"' in reference
    assert 'id="clutune.clu.methods.base.Method"' in reference
    assert "The budget every method shares" in reference  # BaseHparams' docstring


def test_strict_build_refuses_a_broken_link_and_a_broken_reference(tmp_path: Path) -> None:
    """The same site with one link to a missing page and one reference to a missing object must not build."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    plugin = next(p for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(REPO)]  # the code stays where it is
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    page = tmp_path / "docs" / "concepts.md"
    broken = "See [a page that is not there](no-such-page.md) and [Config][clutune.core.config.NoSuchThing]."
    page.write_text(page.read_text() + "\n" + broken + "\n")
    done = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "no-such-page.md" in output
    assert "clutune.core.config.NoSuchThing" in output


def test_every_command_has_a_page_in_the_nav() -> None:
    nav_pages = set()

    def walk(node: object) -> None:
        if isinstance(node, str):
            nav_pages.add(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])
    missing = [c for c in _subcommands() if not (REPO / "docs" / "commands" / f"{c}.md").is_file()]
    assert not missing, f"commands without a page under docs/commands/: {missing}"
    unlisted = [c for c in _subcommands() if f"commands/{c}.md" not in nav_pages]
    assert not unlisted, f"command pages missing from mkdocs.yml nav: {unlisted}"


def test_readme_is_a_front_page() -> None:
    readme = (REPO / "README.md").read_text()
    # a generated block's marker lines (`make results`) are not text a reader sees
    markers = sum(line.startswith(("<!-- results:", "<!-- /results:")) for line in readme.splitlines())
    lines = readme.count("\n") + (not readme.endswith("\n")) - markers
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the docs site holds the rest"
    assert "make demo" in readme and "make test" in readme and "make docs" in readme
    linked = [part.split(")")[0] for part in readme.split("](docs/")[1:]]
    for target in linked:
        path = REPO / "docs" / target.split("#")[0]
        assert path.exists(), f"README links to docs/{target}, which does not exist"


DATASETS_TUNED = ("digits", "mnist1d", "cifar10")  # the columns of each method's table, in this order


def _cell(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def methods_page_table(method: str) -> str:
    """A method's table on the Methods page, as its hyperparameter dataclass and tuned-defaults files give it
    (`·`: the file leaves the key at its default)."""
    from dataclasses import fields

    from clutune.clu.methods import get_method

    best = REPO / "clutune" / "presets" / "best"
    files = {d: best / f"{method}-{d}.yaml" for d in DATASETS_TUNED}
    tuned = {d: yaml.safe_load(path.read_text()) or {} for d, path in files.items() if path.exists()}
    head = ["key", "default", *(f"tuned, {d}" for d in tuned)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    defaults = get_method(method).Hparams()
    for f in fields(defaults):
        cells = [f"`{f.name}`", _cell(getattr(defaults, f.name))]
        cells += [_cell(v[f.name]) if f.name in v else "·" for v in tuned.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def test_the_methods_page_shows_every_tuned_default() -> None:
    """Each method's table on the Methods page equals what its files hold, so a retuning cannot leave it stale."""
    from clutune.clu.methods import BUILTIN_METHODS

    page = (REPO / "docs" / "methods.md").read_text()
    for method in BUILTIN_METHODS:
        table = methods_page_table(method)
        assert f"### `{method}`" in page, f"docs/methods.md has no section for {method}"
        assert table in page, f"docs/methods.md's table for {method} is stale; it should read:\n{table}"
