"""The documentation's address, in one place: help texts and messages name a page by its URL, because an installed
wheel carries no ``docs/`` folder to point at."""

from __future__ import annotations

DOCS_URL = "https://clutune.readthedocs.io/en/latest/"


def docs_page(page: str, section: str = "") -> str:
    """The URL of a docs page (``"methods"``) and optionally one of its headings' anchors (``"compute-settings"``)."""
    anchor = f"#{section}" if section else ""
    return f"{DOCS_URL}{page}.html{anchor}"
