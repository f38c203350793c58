"""Errors that describe bad input or state, shown to users as one clear line instead of a traceback."""


class UserError(Exception):
    """Something the user can fix: a bad file, a missing artifact, a refused operation."""
