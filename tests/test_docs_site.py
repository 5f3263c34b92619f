"""The docs site as a reader meets it: it works opened from disk, lists render as lists, code fits its box, and
every figure opens full size on click. Checked on the Markdown sources, with the site's own Markdown extensions."""

from __future__ import annotations

import re
from pathlib import Path

import markdown
import yaml

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").rglob("*.md"))
CODE_WIDTH = 100  # what a code block shows without scrolling beside the nav on a laptop screen
FENCE = re.compile(r"^\s*```")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
LIST_ITEM = re.compile(r"^\s*([-*+]|\d+\.) \S")


def _site() -> dict:
    return yaml.safe_load((REPO / "mkdocs.yml").read_text())


def _code_lines(text: str) -> list[tuple[int, str]]:
    lines, inside = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
        elif inside:
            lines.append((number, line))
    return lines


def test_the_site_works_opened_from_disk() -> None:
    assert _site()["use_directory_urls"] is False  # links name pages (run.html), not folders a browser lists


def test_every_list_renders_as_a_list() -> None:
    """Python-Markdown needs a blank line before a list and four spaces for a nested block; otherwise the items
    come out as running text, which shows as a paragraph still starting with '- '."""
    extensions = [e if isinstance(e, str) else next(iter(e)) for e in _site()["markdown_extensions"]]
    flat = []
    for page in PAGES:
        text = re.sub(r"^:::.*?(?=^\S)", "", page.read_text(), flags=re.S | re.M)  # mkdocstrings' own blocks
        html = re.sub(r"<pre.*?</pre>", "", markdown.markdown(text, extensions=extensions), flags=re.S)
        flat += [f"{page.relative_to(REPO)}: {line[:60]}" for line in html.splitlines() if LIST_ITEM.match(line)]
    assert not flat, "list items rendered as running text:\n" + "\n".join(flat)


def test_code_blocks_fit_the_column() -> None:
    wide = [
        f"{page.relative_to(REPO)}:{number} ({len(line)} columns)"
        for page in PAGES
        for number, line in _code_lines(page.read_text())
        if len(line) > CODE_WIDTH
    ]
    assert not wide, f"code lines over {CODE_WIDTH} columns:\n" + "\n".join(wide)


def test_every_figure_opens_full_size_on_click() -> None:
    """The theme shrinks a figure to the text column; a link to the image file itself shows it at full size."""
    unlinked = []
    for page in PAGES:
        text = page.read_text()
        for match in IMAGE.finditer(text):
            linked = text[match.start() - 1] == "[" and text[match.end() :].startswith(f"]({match.group(1)})")
            if not linked:
                unlinked.append(f"{page.relative_to(REPO)}: {match.group(1)}")
    assert not unlinked, "figures without a link to themselves:\n" + "\n".join(unlinked)
