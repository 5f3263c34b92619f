"""One exception type for everything a user can get wrong, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """Bad input: a malformed config, an unknown method, an impossible request, a missing data folder."""


class RunFailed(Exception):
    """Work that started and could not finish (a run of a fixed grid errored): what it recorded is kept for
    ``--resume``, and the CLI prints one line and exits 1 instead of reporting a partial grid as done."""
