"""One exception type for everything a user can get wrong, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """Bad input: a malformed config, an unknown method, an impossible request, a missing data folder."""


class RunFailed(Exception):
    """Work that started and could not finish (a run of a fixed grid errored): what it recorded is kept for
    ``--resume``, and the CLI prints one line and exits 1 instead of reporting a partial grid as done."""


class MethodFailed(RunFailed):
    """A method failed in a way every retry would repeat (the privacy door refused an unlearned id, a UserError
    inside the method, an unlearned id left in its buffer): it ends the run at once in one line naming the method,
    the request and the method's own call site, with nothing to ``--resume``: the method's code must change."""
