"""The command line is a thin layer over the Python API: cli.py reaches the platform only through clutune.api,
so every command can be called from Python with the same checks and the same record."""

from __future__ import annotations

import ast
from pathlib import Path

import clutune
import clutune.api
from clutune.cli import build_parser

CLI = Path(clutune.__file__).parent / "cli.py"


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module cli.py imports, at the top or inside a function, with ``from X import Y`` as ``X.Y``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def test_cli_imports_nothing_from_the_platform():
    modules = _imported_modules(ast.parse(CLI.read_text()))
    assert "clutune.api.tracking_failures" in modules  # the walk sees imports inside functions
    platform = [m for m in modules if m == "clutune.platform" or m.startswith("clutune.platform.")]
    assert platform == []


def test_the_check_sees_both_forms_of_a_platform_import():
    source = "def f():\n    from clutune import platform\n    import clutune.platform.run.oracles\n"
    modules = _imported_modules(ast.parse(source))
    assert modules == ["clutune.platform", "clutune.platform.run.oracles"]


def test_every_command_has_its_api_function_exported_from_clutune():
    commands = build_parser()._subparsers._group_actions[0].choices
    for command in commands:
        name = command.replace("-", "_")
        assert name in clutune.api.__all__, command
        assert getattr(clutune, name) is getattr(clutune.api, name), command


def test_tracking_uri_is_defined_once():
    assert CLI.read_text().count('"--tracking-uri"') == 1
