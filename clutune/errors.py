"""One exception type for everything a user can get wrong, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """Bad input: a malformed config, an unknown method, an impossible request, a missing data folder."""
