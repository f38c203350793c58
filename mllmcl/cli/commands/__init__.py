"""Sub-commands of the `mllmcl` CLI; each module exposes `register(subparsers)`."""
