"""User data stays in its folder: a class folder or an image linked to ``/usr/share`` once trained on (and
cached) thousands of system images, and a link to ``/`` would have scanned the whole disk. Every link under a
data root is resolved and checked before any file is listed or read; ``dataset.follow_links: true`` is the
explicit way to use data that lives elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

from clutune.errors import UserError

_HOWTO = "set dataset.follow_links: true to read data outside it"


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_links_inside(root: Path, what: str) -> None:
    """Refuse, in one line, any link under ``root`` (hidden entries aside: no reader opens them) that resolves
    outside ``root``. Links are not followed while looking, so a link to ``/`` costs one check, not a scan."""
    real_root = root.resolve()
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in [*dirs, *files]:
            entry = Path(folder) / name
            if name.startswith(".") or not entry.is_symlink():
                continue
            target = entry.resolve()
            if not _inside(target, real_root):
                raise UserError(f"{what}: {entry} links to {target}, outside {root}; {_HOWTO}")


def check_file_inside(path: Path, what: str) -> None:
    """Refuse a data file that is a link resolving outside the folder it is named in."""
    folder = path.absolute().parent.resolve()
    target = path.resolve()
    if path.is_symlink() and not _inside(target, folder):
        raise UserError(f"{what}: links to {target}, outside {folder}; {_HOWTO}")


__all__ = ["check_file_inside", "check_links_inside"]
