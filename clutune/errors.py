"""One exception type for everything a user can get wrong, so the CLI can print one line and exit 2."""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input: a malformed config, an unknown method, an impossible request, a missing data folder."""


class RunFailed(Exception):
    """Work that started and could not finish (a run of a fixed grid errored): what it recorded is kept for
    ``--resume``, and the CLI prints one line and exits 1 instead of reporting a partial grid as done."""


class MethodFailed(RunFailed):
    """A method failed in a way every retry would repeat (the privacy door refused an unlearned id, a UserError
    inside the method, an unlearned id left in its buffer): it ends the run at once in one line naming the method,
    the request and the method's own call site, with nothing to ``--resume``: the method's code must change."""


# A write refused for want of room: a full disk, a full quota, or the process's file size limit (RLIMIT_FSIZE).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFull(RunFailed, OSError):
    """A write failed for want of room. Every file clutune writes is moved into place whole or appended in whole
    batches, so what is on the disk is whole or absent: the user frees room and runs the command again. It is an
    OSError still, so code that survives a failed write (Tune's storage, the caches) survives this one."""

    @classmethod
    def of(cls, error: OSError, path: object = None) -> DiskFull:
        where = path if path is not None else error.filename
        reason = error.strerror or str(error)
        return cls(
            error.errno,
            f"cannot write {where if where is not None else 'a file'}: {reason} (the disk or a size limit is full); "
            "every file already written is whole: free some room and run the command again",
        )

    def __str__(self) -> str:
        return str(self.strerror)


def raise_if_disk_full(error: BaseException, path: object) -> None:
    """Called where a write failed, after its cleanup: a failure for want of room becomes :class:`DiskFull`
    naming the file (OSError carries no name when pyarrow or a buffered file raised it)."""
    if isinstance(error, OSError) and not isinstance(error, DiskFull) and error.errno in DISK_FULL_ERRNOS:
        raise DiskFull.of(error, path) from error
