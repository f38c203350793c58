"""One error model for every entry point (the `mllmcl` CLI, the DVC stages, the Prefect flows, the scripts).

A `UserError` is something the user can fix: it is shown as one line naming the file, key or row and the rule,
with exit status 2 and no traceback. Anything else is a bug: exit status 3 with the traceback. A negative
decision (a failed gate, drift found) is not an error: its command returns 1."""

from __future__ import annotations

EXIT_OK = 0
EXIT_DECISION = 1  # the command worked and said no: gate failed, drift detected, validation failed
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


class UserError(Exception):
    """Something the user can fix: a bad file, a missing artifact, a refused operation."""


class ConfigError(UserError):
    """params.yaml is missing, unreadable, or breaks a rule of its schema."""


class DataError(UserError):
    """Task data, an image or a request that cannot be used; the message names file, row and rule."""


class StorageError(UserError):
    """The registry's store (a folder or S3) refused or lost an object."""


class ModelLoadError(UserError):
    """A base model or adapter folder that cannot be loaded (missing file, corrupt weights, remote code)."""
