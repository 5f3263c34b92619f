"""docs/layout.md names every folder and module of the package, and nothing that is gone: a newcomer reads the
tree from it, so a module added or moved without a line there fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "clutune"
FOLDER_HEADING = re.compile(r"^#+ `(clutune/(?:[\w/]*/)?)`\s*$")
MODULE_LINE = re.compile(r"^- `(\w+\.py)`: \S")


def documented() -> dict[str, set[str]]:
    """Folder (as ``clutune/x/``) -> the modules listed under its heading on the page."""
    folders: dict[str, set[str]] = {}
    current = None
    for line in (REPO / "docs" / "layout.md").read_text().splitlines():
        if heading := FOLDER_HEADING.match(line):
            current = heading.group(1)
            assert current not in folders, f"docs/layout.md lists {current} twice"
            folders[current] = set()
        elif line.startswith("#"):
            current = None
        elif current and (module := MODULE_LINE.match(line)):
            folders[current].add(module.group(1))
    return folders


def _holds_code(init: Path) -> bool:
    """An ``__init__.py`` that is more than its docstring (the folder's heading line says what that says)."""
    body = ast.parse(init.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def in_tree() -> dict[str, set[str]]:
    """Folder (as ``clutune/x/``) -> its modules, for every folder of the package, package data included."""
    folders: dict[str, set[str]] = {}
    for folder in sorted([PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]):
        if folder.name == "__pycache__":
            continue
        modules = {p.name for p in folder.glob("*.py") if p.name != "__init__.py" or _holds_code(p)}
        folders[folder.relative_to(REPO).as_posix() + "/"] = modules
    return folders


def _not_in(these: dict[str, set[str]], those: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """The folders of ``these`` that ``those`` lacks, and the modules of their shared folders that it lacks."""
    folders = sorted(set(these) - set(those))
    modules = sorted(f"{f}{m}" for f, names in these.items() if f in those for m in names - those[f])
    return folders, modules


def test_every_folder_and_module_is_on_the_layout_page() -> None:
    folders, modules = _not_in(in_tree(), documented())
    assert not folders, f"folders with no heading in docs/layout.md: {folders}"
    assert not modules, f"modules with no line in docs/layout.md: {modules}"


def test_the_layout_page_names_nothing_that_is_gone() -> None:
    folders, modules = _not_in(documented(), in_tree())
    assert not folders, f"docs/layout.md lists folders that do not exist: {folders}"
    assert not modules, f"docs/layout.md lists modules that do not exist: {modules}"


def test_the_walk_sees_the_whole_package() -> None:
    """The two tests above are only as good as the walk: it must reach nested folders and data-only folders."""
    tree = in_tree()
    assert "clutune/clu/methods/" in tree and "ugclu.py" in tree["clutune/clu/methods/"]
    assert "clutune/platform/run/" in tree and "runtime.py" in tree["clutune/platform/run/"]
    assert tree["clutune/presets/best/"] == set()
    assert "__init__.py" in tree["clutune/"] and "__init__.py" not in tree["clutune/core/"]
    assert sum(len(modules) for modules in tree.values()) == sum(
        1 for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or _holds_code(p)
    )
