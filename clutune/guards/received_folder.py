"""A folder someone sent is untrusted input: ``report``, ``dashboard`` and ``sync`` read a file from it only when
the file, its links followed, lies inside it. A ``plots/a.png`` linked to ``~/.ssh/id_rsa`` would otherwise be
embedded in a report page or uploaded to a tracking server; such a file is refused in one line naming it."""

from __future__ import annotations

from pathlib import Path

from clutune.errors import UserError


class ReceivedFolder:
    """The folder a command was given, and the only place its files may come from. The folder's own path is the
    user's choice, so a link in it is followed; every file read through it must resolve inside it.

    Paths are handed back as named in the folder (a plot keeps its name), once checked; nothing is listed
    recursively, so a link to ``/`` costs one check, never a scan of the disk."""

    def __init__(self, folder: Path | str) -> None:
        self.given = Path(folder)
        self.root = self.given.resolve()

    def inside(self, path: Path) -> Path:
        """``path`` when it, its links followed, lies inside the folder; else a one-line refusal naming it."""
        target = Path(path).resolve()
        if target != self.root and self.root not in target.parents:
            raise UserError(
                f"{path} resolves to {target}, outside {self.given}: a received folder's files are read only from "
                "inside it"
            )
        return Path(path)

    def file(self, name: str) -> Path | None:
        """The file ``name`` (relative to the folder) once checked to lie inside it; None when there is none."""
        path = self.given / name
        if not path.is_symlink() and not path.exists():
            return None
        return path if self.inside(path).is_file() else None

    def entries(self, under: str) -> list[Path]:
        """What the folder ``under`` (relative to the folder) holds, each entry checked to lie inside; none when
        it is absent."""
        top = self.given / under
        if not top.is_symlink() and not top.exists():
            return []
        if not self.inside(top).is_dir():
            return []
        return [self.inside(p) for p in sorted(top.iterdir())]


__all__ = ["ReceivedFolder"]
